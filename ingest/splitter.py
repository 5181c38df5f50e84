"""Recursive text splitting with exact offsets, in the manner of LangChain's
RecursiveCharacterTextSplitter.

A text is cut at the coarsest separator it contains (paragraph, line, space, character),
with each separator kept at the start of the piece it precedes, so pieces tile the text
and chunks are plain `[start, end)` spans of it. Pieces that fit are packed greedily into
chunks; a piece too long is cut again with the next separator. Each chunk after the first
of a run of pieces starts with the previous chunk's trailing pieces that fit in the
overlap.

Piece lengths are measured once and summed; that is exact for characters and close for
tokens (a BERT-style tokenizer splits at whitespace, so counts only drift where a word is
cut into characters). Every chunk, and every overlap, is therefore measured once more
with the real length function before it is kept, and shrunk if the sum was optimistic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

from tokenizers import Tokenizer

from docent.types import ChunkUnit

DEFAULT_SEPARATORS = ("\n\n", "\n", " ", "")


class _Piece(NamedTuple):
    start: int
    end: int
    length: int


class RecursiveSplitter:
    """Splits text into chunks of at most `chunk_size` (by `length`) with overlap.

    The one chunk that can exceed `chunk_size` is a single character that alone
    measures more (some characters are several tokens); it cannot be cut further.
    """

    def __init__(
        self,
        chunk_size: int,
        chunk_overlap: int,
        length: Callable[[str], int] = len,
        separators: Sequence[str] = DEFAULT_SEPARATORS,
    ):
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
        if chunk_overlap < 0:
            raise ValueError(f"chunk_overlap must not be negative, got {chunk_overlap}")
        if chunk_overlap >= chunk_size:
            raise ValueError(f"chunk_overlap ({chunk_overlap}) must be smaller than chunk_size ({chunk_size})")
        self.chunk_size = chunk_size
        self.chunk_overlap = chunk_overlap
        self.length = length
        # Cutting between characters is always the last resort, so that every piece can
        # be made to fit whatever separators were given.
        self.separators = tuple(s for s in separators if s) + ("",)

    def split(self, text: str) -> list[str]:
        return [text[start:end] for start, end in self.split_spans(text)]

    def split_spans(self, text: str) -> list[tuple[int, int]]:
        """Chunk spans `[start, end)` into `text`, in order, trimmed of whitespace."""
        spans: list[tuple[int, int]] = []
        whole = _Piece(0, len(text), self.length(text))
        if whole.length <= self.chunk_size:
            self._merge(text, [whole], spans)
        else:
            self._split(text, 0, len(text), 0, spans)
        return spans

    def _split(self, text: str, start: int, end: int, level: int, spans: list[tuple[int, int]]) -> None:
        """Cuts `text[start:end]` at the coarsest separator from `level` on that occurs in it."""
        while level < len(self.separators) - 1 and text.find(self.separators[level], start, end) < 0:
            level += 1
        run: list[_Piece] = []
        for piece_start, piece_end in _cut(text, start, end, self.separators[level]):
            piece = _Piece(piece_start, piece_end, self.length(text[piece_start:piece_end]))
            if piece.length <= self.chunk_size or piece_end - piece_start == 1:
                run.append(piece)
                continue
            # As in LangChain, a piece that must be cut again closes the run before it:
            # chunks never straddle it, and no overlap crosses it.
            self._merge(text, run, spans)
            run = []
            self._split(text, piece_start, piece_end, level + 1, spans)
        self._merge(text, run, spans)

    def _merge(self, text: str, run: list[_Piece], spans: list[tuple[int, int]]) -> None:
        """Packs consecutive pieces into chunks.

        A chunk is dropped when it is blank, or when all it adds to the chunk before it is
        blank: it would only repeat that chunk's end.
        """
        first, fresh, previous = 0, 0, None  # `fresh`: first piece not in the previous window
        while fresh < len(run):
            first, end = self._fit(text, run, first, self._fill(run, first), fresh, previous)
            span = _trim(text, run[first].start, run[end - 1].end)
            if span[0] < span[1] and (previous is None or span[1] > previous[1]):
                spans.append(span)
                previous = span
            if end < len(run):
                first = self._overlap_start(run, first, end, span)
            fresh = end

    def _fill(self, run: list[_Piece], first: int) -> int:
        """End of the longest window from `first` whose summed length fits."""
        end, total = first, 0
        while end < len(run) and total + run[end].length <= self.chunk_size:
            total += run[end].length
            end += 1
        return max(end, first + 1)

    def _fit(
        self,
        text: str,
        run: list[_Piece],
        first: int,
        end: int,
        fresh: int,
        previous: tuple[int, int] | None,
    ) -> tuple[int, int]:
        """Shrinks the window `run[first:end]` until its real length fits and its real
        overlap with the previous chunk does too.

        Too long, it gives back its trailing pieces, but keeps at least one fresh piece so
        that the chunks make progress, then drops overlap pieces. A single piece always
        stays: it was measured alone and fitted.
        """
        while end - first > 1:
            start, stop = _trim(text, run[first].start, run[end - 1].end)
            if self.length(text[start:stop]) > self.chunk_size:
                if end - 1 > fresh:
                    end -= 1
                else:
                    first += 1
            elif previous and start < previous[1] and self.length(text[start : previous[1]]) > self.chunk_overlap:
                first += 1
            else:
                break
        return first, end

    def _overlap_start(self, run: list[_Piece], first: int, end: int, span: tuple[int, int]) -> int:
        """First piece of the chunk after `run[first:end]`: LangChain's rule, the longest
        tail that fits in the overlap and leaves room for the next piece.

        The tail must start after the chunk's first non-blank character, or the next
        chunk would start where this one does.
        """
        budget = min(self.chunk_overlap, self.chunk_size - run[end].length)
        after = span[0] if span[0] < span[1] else run[first].start
        start, total = end, 0
        while run[start - 1].start > after and total + run[start - 1].length <= budget:
            start -= 1
            total += run[start].length
        return start


def _cut(text: str, start: int, end: int, separator: str) -> Iterator[tuple[int, int]]:
    """Spans of `text[start:end]` cut before each separator; empty spans are left out."""
    if not separator:
        yield from ((i, i + 1) for i in range(start, end))
        return
    at = text.find(separator, start, end)
    while at >= 0:
        if start < at:
            yield start, at
        start = at
        at = text.find(separator, at + len(separator), end)
    if start < end:
        yield start, end


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    """`[start, end)` without leading and trailing whitespace (as `str.strip` sees it)."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def token_length(tokenizer: Any) -> Callable[[str], int]:
    """Counts the tokens of a text, without special tokens, with a Hugging Face fast
    tokenizer (a `transformers` one or a bare `tokenizers.Tokenizer`).

    It counts with a private copy: a tokenizer.json often carries truncation and padding
    (all-MiniLM-L6-v2's pads and truncates to 128), which would make every count wrong.
    """
    counter = Tokenizer.from_str(getattr(tokenizer, "backend_tokenizer", tokenizer).to_str())
    counter.no_truncation()
    counter.no_padding()

    def length(text: str) -> int:
        return len(counter.encode(text, add_special_tokens=False))

    return length


def make_splitter(chunk_size: int, chunk_overlap: int, unit: str = "chars", tokenizer: Any = None) -> RecursiveSplitter:
    """A splitter measuring in characters (`unit="chars"`) or in the tokens of
    `tokenizer` (`unit="tokens"`)."""
    if unit == ChunkUnit.CHARS:
        return RecursiveSplitter(chunk_size, chunk_overlap)
    if unit == ChunkUnit.TOKENS:
        if tokenizer is None:
            raise ValueError("unit 'tokens' needs a tokenizer to count with")
        return RecursiveSplitter(chunk_size, chunk_overlap, token_length(tokenizer))
    raise ValueError(f"unknown chunk unit {unit!r}: expected 'chars' or 'tokens'")
