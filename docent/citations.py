"""Checked citations: does the source an answer cites for a claim actually say it?

An answer's claims are the stretches of text that end in citation marks ("… [2]" or
"… [1][3]"): each is checked against every source it cites. A claim's support by a source
is the mean of two measures, both cheap enough for every answer:

- lexical containment: the share of the claim's content words (stemmed, stopwords out)
  that the source contains — a quote or a close paraphrase scores near 1;
- semantic: the best cosine similarity between the claim and one of the source's
  sentences, in the static token vectors of the index's model.

Without an embedder, containment alone. A claim is supported when every source it cites
exists and reaches `threshold`; the threshold is chosen on labelled citations
(bench/citations.py, docs/benchmarks.md).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from docent.blocks import BlockKind, split_sentences, units
from docent.embedding.model import Embedder
from docent.lexical import tokenize
from docent.settings import LexicalSettings
from docent.types import Citation

# "[1]", "[1][3]", "[1, 3]"; not an index like results[0] (a word character right before it).
CITATION_MARKS = re.compile(r"(?:\s*(?<![\w`\]])\[\d+(?:\s*,\s*\d+)*\](?:\[\d+(?:\s*,\s*\d+)*\])*)+")
_INLINE_CODE = re.compile(r"`[^`\n]+`")
_NUMBER = re.compile(r"\d+")
_FENCE = re.compile(r"```.*?(?:```|$)", re.DOTALL)
# A claim is at most the sentence before its mark…
_LIST_MARKER = re.compile(r"^(?:[-*+•]|\d{1,3}[.)])\s+")  # …or the list item
_WORDS = LexicalSettings(stopwords=True, stemming=True)
_MIN_CLAIM_WORDS = 1


@dataclass(frozen=True)
class Claim:
    text: str
    sources: tuple[int, ...]


def claims(answer: str) -> list[Claim]:
    """The answer's cited claims, in order: the sentence before each run of citation marks.

    Code blocks are no claims (a citation is never inside one); their text is skipped.
    """
    text = _INLINE_CODE.sub(lambda code: code.group().replace("[", "\x00").replace("]", "\x01"), _FENCE.sub("\n", answer))
    found: list[Claim] = []
    position = 0
    for match in CITATION_MARKS.finditer(text):
        before = text[position : match.start()]
        position = match.end()
        sentence = _last_claim(before)
        if not sentence and found:
            # "[1] [2]" after one sentence, or marks after a list: they cite the claim before them.
            sentence = found.pop().text
        numbers = tuple(dict.fromkeys(int(n) for n in _NUMBER.findall(match.group())))
        if sentence:
            found.append(Claim(sentence.replace("\x00", "[").replace("\x01", "]"), numbers))
    return found


def _last_claim(text: str) -> str:
    """The line before a citation mark; its last sentence unless the line is a list item."""
    lines = [line for line in text.strip().split("\n") if line.strip()]
    if not lines:
        return ""
    line = lines[-1].strip()
    item = _LIST_MARKER.match(line)
    if item:
        return line[item.end() :].strip()
    return split_sentences(line)[-1].strip() if split_sentences(line) else ""


def strip_citations(text: str) -> str:
    return CITATION_MARKS.sub("", text).strip()


class CitationChecker:
    def __init__(self, embedder: Embedder | None, threshold: float):
        self.embedder, self.threshold = embedder, threshold

    def check(self, answer: str, sources: Sequence[str]) -> list[Citation]:
        """Each cited claim with its support; a number naming no source is unsupported (score 0)."""
        found = claims(answer)
        if not found:
            return []
        # A claim quoted word for word (the offline answer's) needs no vectors: its source says it.
        quoted = {(position, n) for position, claim in enumerate(found) for n in claim.sources
                  if 1 <= n <= len(sources) and _squeeze(claim.text) in _squeeze(sources[n - 1])}
        unquoted = [claim for position, claim in enumerate(found) if any((position, n) not in quoted for n in claim.sources)]
        cited = sorted({n for claim in unquoted for n in claim.sources if 1 <= n <= len(sources)})
        semantic = self._semantic(found, {n: sources[n - 1] for n in cited}) if unquoted else {}
        citations = []
        for position, claim in enumerate(found):
            exists = all(1 <= n <= len(sources) for n in claim.sources)
            scores = [
                (1.0 if (position, n) in quoted else self._support(claim.text, sources[n - 1], semantic.get((position, n))))
                if exists else 0.0
                for n in claim.sources
            ]
            score = round(min(scores), 3)
            supported = exists and score >= self.threshold
            citations.append(Citation(sentence=claim.text, sources=list(claim.sources), supported=supported, score=score))
        return citations

    @staticmethod
    def _support(claim: str, source: str, semantic: float | None) -> float:
        """Containment and semantic similarity averaged: a wrong source shares a claim's topic
        words or its sense, rarely both (bench/citations.py compares the two and their mixes)."""
        contained = containment(claim, source)
        return contained if semantic is None else (contained + max(semantic, 0.0)) / 2

    def _semantic(self, found: list[Claim], sources: dict[int, str]) -> dict[tuple[int, int], float]:
        """(claim position, source number) → the best cosine of the claim with one of the source's sentences."""
        if self.embedder is None or not sources:
            return {}
        sentences = {n: [u.text for u in units(text) if u.kind in (BlockKind.PROSE, BlockKind.LIST)] or [text] for n, text in sources.items()}
        flat = [s for n in sources for s in sentences[n]]
        vectors = self.embedder.embed([c.text for c in found] + flat)
        claim_vectors, sentence_vectors = vectors[: len(found)], vectors[len(found) :]
        scores: dict[tuple[int, int], float] = {}
        start = 0
        for n in sources:
            block = sentence_vectors[start : start + len(sentences[n])]
            start += len(sentences[n])
            best = (claim_vectors @ block.T).max(axis=1) if len(block) else np.zeros(len(found))
            for position, claim in enumerate(found):
                if n in claim.sources:
                    scores[(position, n)] = float(best[position])
        return scores


def _squeeze(text: str) -> str:
    return " ".join(text.split())


def containment(claim: str, source: str) -> float:
    """Share of the claim's content words found in the source (1.0 for a claim without any)."""
    words = set(tokenize(claim, _WORDS))
    if len(words) < _MIN_CLAIM_WORDS:
        return 1.0
    return len(words & set(tokenize(source, _WORDS))) / len(words)


def best_sentence(claim: str, source: str) -> str:
    """The source's sentence (or list, or line) sharing the most content words with the claim: a snippet."""
    words = set(tokenize(claim, _WORDS))
    candidates = [u.text for u in units(source) if u.kind != BlockKind.SKIP] or [source]
    return max(candidates, key=lambda text: len(words & set(tokenize(text, _WORDS))))
