"""A section's text from its chunks: the one way to read sections back out of an index.

Neighbouring chunks overlap; joining them keeps each overlap once (`join_pieces`). The
retriever widens a hit into its neighbours or its whole section (`around`), and the
index store gives whole sections (`IndexStore.sections`) to fine-tuning, golden sets and
reference answers, all through these functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from docent.text import page_section_title


@dataclass(frozen=True)
class SectionPiece:
    text: str
    offset: int | None  # where the chunk starts in its section; None for chunks from before migration 3


@dataclass(frozen=True)
class StoredSection:
    """One section of an index: its URL, titles, and its chunks' text joined."""

    source: str
    page_title: str
    section_title: str
    text: str

    @property
    def title(self) -> str:
        return page_section_title(self.page_title, self.section_title)

# Neighbouring chunks share at most the configured overlap; searching further only costs time.
_MAX_OVERLAP_CHARS = 2000


def join_pieces(pieces: Sequence[SectionPiece]) -> str:
    """Neighbouring chunks of one section joined into one text, each overlap kept once:
    exactly by their offsets in the section, else by the longest text they share."""
    merged = ""
    end: int | None = None  # where `merged` ends in the section, when known
    for piece in pieces:
        if not merged:
            merged = piece.text
        elif end is not None and piece.offset is not None:
            shared = max(0, end - piece.offset)
            merged += piece.text[shared:] if shared else "\n" + piece.text
        else:
            merged = merge_overlapping([merged, piece.text])
        end = None if piece.offset is None else piece.offset + len(piece.text)
    return merged


def merge_overlapping(texts: Sequence[str]) -> str:
    """Texts joined, each suffix/prefix they share kept once (ambiguous in repetitive text:
    only for chunks stored without offsets)."""
    merged = ""
    for text in texts:
        if not merged:
            merged = text
            continue
        shared = _overlap(merged, text)
        merged += text[shared:] if shared else "\n" + text
    return merged


def _overlap(left: str, right: str) -> int:
    longest = min(len(left), len(right), _MAX_OVERLAP_CHARS)
    for size in range(longest, 0, -1):
        if left.endswith(right[:size]):
            return size
    return 0


def around(pieces: Sequence[SectionPiece], center: int, budget: int) -> list[SectionPiece]:
    """The contiguous run of `pieces` around `center` that fits in `budget` characters,
    growing one neighbour at a time on alternate sides; the center is always kept."""
    texts = [piece.text for piece in pieces]
    start, end = center, center + 1
    used = len(texts[center])
    grew = True
    while grew:
        grew = False
        for side in ("left", "right"):
            candidate = start - 1 if side == "left" else end
            if 0 <= candidate < len(texts) and used + len(texts[candidate]) <= budget:
                used += len(texts[candidate])
                start, end = (candidate, end) if side == "left" else (start, end + 1)
                grew = True
    return list(pieces[start:end])
