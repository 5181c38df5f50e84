"""The offline generator: answers with the retrieved sentences most relevant to the question.

With no LLM configured, docent still answers: it splits the retrieved chunks into
sentences, embeds them with the index's model, and picks sentences by maximal marginal
relevance (relevant to the question, unlike those already picked), each cited by the
number of the source it came from.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from docent.embedding.model import Embedder
from docent.settings import EmbeddingSettings, GenerationSettings
from docent.types import ExtractiveEmbedding, SearchHit

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9`\"'(])|\n{2,}")
_MIN_SENTENCE_CHARS = 25
# A piece without closing punctuation and shorter than this is a heading, not a sentence.
_MIN_HEADING_FREE_WORDS = 8
_CODE_MARKS = re.compile(r"(^[#$>|`]|\s=\s|\|.*\||[{};]|\(\)|\w\.\w+\.\w)")


@dataclass(frozen=True)
class Sentence:
    text: str
    source_number: int  # 1-based position of its hit among the sources


@dataclass
class ExtractiveAnswer:
    sentences: list[Sentence]

    @property
    def text(self) -> str:
        return " ".join(f"{s.text} [{s.source_number}]" for s in self.sentences)

    def tokens(self) -> Iterator[str]:
        """The answer in word-sized pieces, streamed like an LLM's tokens."""
        yield from re.findall(r"\S+\s*", self.text)


def split_sentences(hits: Sequence[SearchHit]) -> list[Sentence]:
    sentences = []
    for number, hit in enumerate(hits, start=1):
        for part in _SENTENCE_END.split(hit.text):
            text = " ".join(part.split())
            if is_prose(text):
                sentences.append(Sentence(text, number))
    return sentences


def is_prose(text: str) -> bool:
    """A sentence worth quoting: not too short, not a heading, not code or a table row."""
    if len(text) < _MIN_SENTENCE_CHARS or _CODE_MARKS.search(text):
        return False
    return text[-1] in ".!?:)" or len(text.split()) >= _MIN_HEADING_FREE_WORDS


def maximal_marginal_relevance(query: np.ndarray, candidates: np.ndarray, count: int, weight: float) -> list[int]:
    """Indices of `count` candidates, each maximising weight·relevance − (1−weight)·redundancy."""
    relevance = candidates @ query
    chosen: list[int] = []
    while len(chosen) < min(count, len(candidates)):
        redundancy = (candidates @ candidates[chosen].T).max(axis=1) if chosen else np.zeros(len(candidates))
        scores = weight * relevance - (1 - weight) * redundancy
        scores[chosen] = -np.inf
        chosen.append(int(scores.argmax()))
    return chosen


class ExtractiveGenerator:
    def __init__(self, embedder: Embedder, sentences: int, diversity_weight: float):
        self.embedder, self.count, self.weight = embedder, sentences, diversity_weight

    def answer(self, question: str, hits: Sequence[SearchHit]) -> ExtractiveAnswer:
        sentences = split_sentences(hits)
        if not sentences:
            return ExtractiveAnswer([])
        vectors = self.embedder.embed([question] + [s.text for s in sentences])
        picked = maximal_marginal_relevance(vectors[0], vectors[1:], self.count, self.weight)
        return ExtractiveAnswer([sentences[i] for i in picked])


def load_extractive(embedding: EmbeddingSettings, generation: GenerationSettings) -> ExtractiveGenerator:
    """The extractive generator with the sentence vectors the settings ask for."""
    from docent.embedding.model import SentenceTransformerEmbedder, StaticTokenEmbedder, load_embedder

    model = load_embedder(embedding)
    if generation.extractive_embedding == ExtractiveEmbedding.STATIC and isinstance(model, SentenceTransformerEmbedder):
        model = StaticTokenEmbedder(model)
    return ExtractiveGenerator(model, generation.extractive_sentences, generation.extractive_relevance_weight)
