"""BM25 over an index's chunks: tokenization, building, persisting and searching.

Tokenization (the same for chunks and queries, unlike the reference, which split
queries on spaces only): lower-case; split on anything not a letter or digit, so
`map_batches` gives `map` and `batches` and `ray.data.Dataset` gives `ray`, `data`,
`dataset`; camelCase is split too (`numGpus` → `num`, `gpus`) while the whole word is
kept as well; English stop words dropped and Snowball stemming applied (both by
setting). The persisted form is bm25s's sparse score matrix (its own saved files, zipped)
with its SHA-256 checksum, so services load it in milliseconds instead of
re-tokenising every chunk.
"""

from __future__ import annotations

import hashlib
import io
import re
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from docent.errors import Unavailable
from docent.settings import LexicalSettings
from docent.types import LexicalBackend

_WORD = re.compile(r"[A-Za-z0-9]+")
# `map_batches`, `ray.data.Dataset`, `num_gpus`: a compound names one thing, unlike its parts.
_IDENTIFIER = re.compile(r"[A-Za-z0-9]+(?:[._][A-Za-z0-9]+)+")
_CAMEL_PART = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")


class LexicalIndexError(Unavailable, RuntimeError):
    pass


@lru_cache(maxsize=2)
def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


@lru_cache(maxsize=1)
def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


def tokenize(text: str, settings: LexicalSettings) -> list[str]:
    tokens: list[str] = []
    for word in _WORD.findall(text):
        parts = _CAMEL_PART.findall(word)
        tokens.append(word.lower())
        if len(parts) > 1:
            tokens.extend(part.lower() for part in parts)
    if settings.identifiers:
        tokens.extend(match.lower() for match in _IDENTIFIER.findall(text))
    if settings.stopwords:
        stop = _stopwords()
        tokens = [t for t in tokens if t not in stop]
    if settings.stemming:
        tokens = _stemmer().stemWords(tokens)
    return tokens


@dataclass
class LexicalHit:
    chunk_id: int
    score: float


class LexicalIndex:
    """BM25 scores of every chunk of one index revision."""

    def __init__(self, settings: LexicalSettings, chunk_ids: np.ndarray, engine) -> None:
        self.settings = settings
        self.chunk_ids = chunk_ids
        self._engine = engine

    @classmethod
    def build(cls, chunk_ids: Sequence[int], texts: Sequence[str], settings: LexicalSettings) -> LexicalIndex:
        corpus = [tokenize(text, settings) or [""] for text in texts]
        ids = np.asarray(chunk_ids, dtype=np.int64)
        if settings.backend == LexicalBackend.RANK_BM25:
            from rank_bm25 import BM25Okapi

            return cls(settings, ids, BM25Okapi(corpus, k1=settings.k1, b=settings.b))
        import bm25s

        engine = bm25s.BM25(method="robertson", k1=settings.k1, b=settings.b)
        engine.index(corpus, show_progress=False)
        return cls(settings, ids, engine)

    def __len__(self) -> int:
        return len(self.chunk_ids)

    def unknown_share(self, text: str) -> float:
        """Share of the text's tokens that no chunk contains (0 for a text without tokens)."""
        tokens = tokenize(text, self.settings)
        if not tokens:
            return 0.0
        return sum(1 for token in tokens if token not in self._vocabulary) / len(tokens)

    def knows(self, word: str) -> bool:
        """Whether some chunk contains every token of `word`."""
        return all(token in self._vocabulary for token in tokenize(word, self.settings))

    @property
    def _vocabulary(self):
        return self._engine.idf if self.settings.backend == LexicalBackend.RANK_BM25 else self._engine.vocab_dict

    def search(self, query: str, k: int) -> list[LexicalHit]:
        tokens = tokenize(query, self.settings)
        if not tokens or k <= 0 or not len(self.chunk_ids):
            return []
        scores = self._scores(tokens)
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [LexicalHit(int(self.chunk_ids[i]), float(scores[i])) for i in top if scores[i] > 0]

    def _scores(self, tokens: list[str]) -> np.ndarray:
        if self.settings.backend == LexicalBackend.RANK_BM25:
            return np.asarray(self._engine.get_scores(tokens), dtype=np.float32)
        known = [t for t in tokens if t in self._engine.vocab_dict]
        if not known:
            return np.zeros(len(self.chunk_ids), dtype=np.float32)
        return self._engine.get_scores(known)

    def to_bytes(self) -> bytes:
        """bm25s's own saved files, zipped with our chunk ids and tokenizer settings."""
        if self.settings.backend != "bm25s":
            raise LexicalIndexError("only the bm25s backend is persisted; rank-bm25 is built in memory")
        buffer = io.BytesIO()
        with tempfile.TemporaryDirectory() as folder, zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            self._engine.save(folder)
            for file in sorted(Path(folder).iterdir()):
                archive.write(file, f"bm25s/{file.name}")
            archive.writestr("settings.json", self.settings.model_dump_json())
            ids = io.BytesIO()
            np.save(ids, self.chunk_ids, allow_pickle=False)
            archive.writestr("chunk_ids.npy", ids.getvalue())
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, payload: bytes, checksum: str) -> LexicalIndex:
        if payload_checksum(payload) != checksum:
            raise LexicalIndexError("lexical index payload does not match its checksum")
        import bm25s

        with tempfile.TemporaryDirectory() as folder, zipfile.ZipFile(io.BytesIO(payload)) as archive:
            archive.extractall(folder)
            engine = bm25s.BM25.load(str(Path(folder, "bm25s")))
            settings = LexicalSettings.model_validate_json(Path(folder, "settings.json").read_text())
            chunk_ids = np.load(Path(folder, "chunk_ids.npy"), allow_pickle=False)
        return cls(settings, chunk_ids, engine)


def payload_checksum(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()
