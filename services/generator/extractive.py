"""The offline generator: answers with the best passage of the best source, as the docs wrote it.

With no LLM configured, docent still answers. It reads each of the top sources back into
units (sentences, lists, code blocks: `docent.blocks`), finds the unit most relevant to
the question, weighing the retriever's rank (its first source is usually the right page),
and quotes the contiguous passage around it: the sentence before when the passage begins
by referring back, the sentences after while they stay on topic, and the list or code a
sentence introduces (from the next chunk of the section when the chunk ends there). A
second passage is added only when another source is about as relevant and says something
else. Each passage is cited; code stays fenced code and lists stay lists.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from docent.blocks import BlockKind, Unit, render, units
from docent.embedding.model import Embedder
from docent.settings import EmbeddingSettings, GenerationSettings
from docent.types import ExtractiveEmbedding, SearchHit

# A sentence opening with one of these leans on the one before it.
_REFERS_BACK = re.compile(
    r"^(?:This|These|That|Those|It|Its|They|Their|Such|However|But|Then|Also|Otherwise|Instead|In this|In that"
    r"|For (?:example|instance)|Here|Thus|Therefore|As a result|Similarly|Note that this)\b"
)


@dataclass(frozen=True)
class Passage:
    source_number: int  # 1-based position of its hit among the sources
    units: tuple[Unit, ...]
    relevance: float  # of its best unit to the question

    @property
    def markdown(self) -> str:
        """The passage as Markdown, its citation after its last sentence or list (never inside code)."""
        parts = list(self.units)
        last_words = max(i for i, u in enumerate(parts) if u.kind != BlockKind.CODE)
        cited = Unit(parts[last_words].kind, f"{parts[last_words].text} [{self.source_number}]", parts[last_words].paragraph)
        return render([*parts[:last_words], cited, *parts[last_words + 1 :]])

    @property
    def quoted(self) -> str:
        """The passage's words as the source has them, for snippets."""
        return render(list(self.units))


@dataclass
class ExtractiveAnswer:
    passages: list[Passage]

    @property
    def text(self) -> str:
        return "\n\n".join(p.markdown for p in self.passages)

    def tokens(self) -> Iterator[str]:
        """The answer in word-sized pieces, streamed like an LLM's tokens (line breaks kept)."""
        yield from re.findall(r"\S+\s*", self.text)


@dataclass(frozen=True)
class PassageSettings:
    hits: int  # sources read for a passage
    rank_weight: float  # relevance bonus of source 1, halved for source 2, …
    max_chars: int  # of a passage's prose and lists (code comes on top)
    max_code_lines: int
    keep_ratio: float  # a neighbouring sentence stays if at least this share of the best one's relevance
    second_ratio: float  # a second passage needs this share of the first's relevance…
    max_redundancy: float  # …and at most this similarity to it


@dataclass
class _Candidate:
    number: int
    units: list[Unit]
    relevance: np.ndarray  # per unit; -inf for units that cannot anchor a passage
    vectors: np.ndarray


class ExtractiveGenerator:
    def __init__(self, embedder: Embedder, settings: PassageSettings):
        self.embedder, self.settings = embedder, settings

    def answer(self, question: str, hits: Sequence[SearchHit]) -> ExtractiveAnswer:
        candidates = self._candidates(question, hits[: self.settings.hits])
        if not candidates:
            return ExtractiveAnswer([])
        ranked = sorted(candidates, key=lambda c: -self._score(c))
        first = self._passage(ranked[0], hits)
        passages = [first]
        second = self._second(ranked[1:], first, ranked[0].vectors, hits)
        if second is not None:
            passages.append(second)
        return ExtractiveAnswer(passages)

    def _candidates(self, question: str, hits: Sequence[SearchHit]) -> list[_Candidate]:
        per_hit = [units(hit.text) for hit in hits]
        texts = [u.text for found in per_hit for u in found]
        if not any(u.quotable for found in per_hit for u in found):
            return []
        vectors = self.embedder.embed([question, *texts])
        query, vectors = vectors[0], vectors[1:]
        candidates, start = [], 0
        for number, found in enumerate(per_hit, start=1):
            own = vectors[start : start + len(found)]
            start += len(found)
            hit = hits[number - 1]
            anchors = [u.quotable and not _announces_nothing(found, i, hit) for i, u in enumerate(found)]
            relevance = np.where(anchors, own @ query if len(found) else [], -np.inf)
            if len(found) and np.isfinite(relevance).any():
                candidates.append(_Candidate(number, found, np.asarray(relevance, dtype=np.float64), own))
        return candidates

    def _score(self, candidate: _Candidate) -> float:
        return float(candidate.relevance.max()) + self.settings.rank_weight / candidate.number

    def _passage(self, candidate: _Candidate, hits: Sequence[SearchHit]) -> Passage:
        found, relevance = candidate.units, candidate.relevance
        anchor = int(relevance.argmax())
        start, end = anchor, anchor + 1
        if _REFERS_BACK.match(found[anchor].text) and anchor > 0 and found[anchor - 1].quotable and found[anchor - 1].kind == BlockKind.PROSE:
            start = anchor - 1
        floor = relevance[anchor] * self.settings.keep_ratio
        chars = sum(len(u.text) for u in found[start:end])
        while end < len(found) and self._continues(found, end, relevance, floor, chars):
            chars += 0 if found[end].kind == BlockKind.CODE else len(found[end].text)
            end += 1
        picked = [u for u in found[start:end] if u.kind != BlockKind.SKIP]
        picked = self._continued(picked, end == len(found), hits[candidate.number - 1])
        while len(picked) > 1 and _dangles(picked[-1]):
            picked.pop()  # "as follows:" with nothing following reads as a cut-off answer
        return Passage(candidate.number, tuple(self._trim_code(u) for u in picked), float(relevance[anchor]))

    def _continues(self, found: list[Unit], position: int, relevance: np.ndarray, floor: float, chars: int) -> bool:
        """Whether the unit at `position` belongs to the passage: what the previous one introduces,
        or an on-topic sentence of the same paragraph that still fits."""
        previous, unit = found[position - 1], found[position]
        if previous.text.rstrip().endswith(":") and unit.kind in (BlockKind.CODE, BlockKind.LIST):
            return True
        if unit.kind != BlockKind.PROSE or unit.paragraph != previous.paragraph:
            return False
        return relevance[position] >= floor and chars + len(unit.text) <= self.settings.max_chars

    def _continued(self, picked: list[Unit], at_chunk_end: bool, hit: SearchHit) -> list[Unit]:
        """The passage carried into the next chunk of its section: the code or list its last
        sentence announces, or the rest of a code block the chunk cut."""
        if not (at_chunk_end and picked and hit.continuation):
            return picked
        following = units(hit.continuation)
        if not following or following[0].kind not in (BlockKind.CODE, BlockKind.LIST):
            return picked
        last = picked[-1]
        if last.kind == BlockKind.CODE and following[0].kind == BlockKind.CODE:
            return [*picked[:-1], Unit(BlockKind.CODE, f"{last.text}\n{following[0].text}", last.paragraph)]
        if last.text.rstrip().endswith(":"):
            return [*picked, following[0]]
        return picked

    def _trim_code(self, unit: Unit) -> Unit:
        lines = unit.text.split("\n")
        if unit.kind != BlockKind.CODE or len(lines) <= self.settings.max_code_lines:
            return unit
        return Unit(unit.kind, "\n".join([*lines[: self.settings.max_code_lines], "..."]), unit.paragraph)

    def _second(self, others: list[_Candidate], first: Passage, first_vectors: np.ndarray, hits: Sequence[SearchHit]) -> Passage | None:
        """Another source's passage, when it is nearly as relevant and not a restatement of the first."""
        for candidate in others:
            passage = self._passage(candidate, hits)
            if passage.relevance < first.relevance * self.settings.second_ratio:
                return None  # the rest rank lower still
            anchor = candidate.vectors[int(candidate.relevance.argmax())]
            if float((first_vectors @ anchor).max()) <= self.settings.max_redundancy:
                return passage
        return None


def _dangles(unit: Unit) -> bool:
    return unit.kind == BlockKind.PROSE and unit.text.rstrip().endswith(":")


def _announces_nothing(found: list[Unit], position: int, hit: SearchHit) -> bool:
    """A sentence ending in ':' whose list or code is missing (the loader dropped it, or the chunk ended)."""
    if not _dangles(found[position]):
        return False
    following = found[position + 1 : position + 2] or units(hit.continuation)[:1]
    return not following or following[0].kind not in (BlockKind.CODE, BlockKind.LIST)


def passage_settings(generation: GenerationSettings) -> PassageSettings:
    e = generation.extractive
    return PassageSettings(
        hits=e.hits, rank_weight=e.rank_weight, max_chars=e.max_chars, max_code_lines=e.max_code_lines,
        keep_ratio=e.keep_ratio, second_ratio=e.second_ratio, max_redundancy=e.max_redundancy,
    )


def load_extractive(embedding: EmbeddingSettings, generation: GenerationSettings) -> ExtractiveGenerator:
    """The extractive generator with the sentence vectors the settings ask for."""
    from docent.embedding.model import SentenceTransformerEmbedder, StaticTokenEmbedder, load_embedder

    model = load_embedder(embedding)
    if generation.extractive.embedding == ExtractiveEmbedding.STATIC and isinstance(model, SentenceTransformerEmbedder):
        model = StaticTokenEmbedder(model)
    return ExtractiveGenerator(model, passage_settings(generation))
