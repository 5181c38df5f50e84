"""Semantic (pgvector), lexical (BM25) and hybrid retrieval over one index."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg
import numpy as np

from docent.lexical import LexicalIndex, LexicalIndexError
from docent.scope import ScopeFeatures, ScopeModel, scope_features
from docent.sections import around, join_pieces
from docent.settings import LexicalSettings, RetrievalSettings
from docent.store import IndexRecord, IndexStore
from docent.types import Fusion, LexicalBackend, QueryOptions, RetrievalMode, SearchHit, Strategy, page_of
from services.retriever.fusion import (
    Ranked,
    insert_lexical,
    limit_per_page,
    reciprocal_rank_fusion,
    with_page_evidence,
)


class LexicalIndexMissing(LexicalIndexError):
    pass


@dataclass
class RetrievalRequest:
    query: str
    vector: np.ndarray | None
    mode: RetrievalMode
    k: int
    lexical_k: int
    strategy: Strategy = Strategy.CHUNKS
    fusion: Fusion | None = None  # None: the settings' fusion

    @classmethod
    def resolve(cls, query: str, options: QueryOptions, settings: RetrievalSettings) -> RetrievalRequest:
        """The one place a request's options are laid over the retrieval settings."""

        def pick(asked, default):
            return default if asked is None else asked

        return cls(
            query=query,
            vector=None,
            mode=pick(options.mode, settings.mode),
            k=pick(options.num_chunks, settings.num_chunks),
            lexical_k=pick(options.lexical_k, settings.lexical_k),
            strategy=pick(options.strategy, settings.strategy),
            fusion=options.fusion,
        )


class Retriever:
    def __init__(
        self,
        pool: asyncpg.Pool,
        index: IndexRecord,
        lexical: LexicalIndex | None,
        settings: RetrievalSettings,
        ef_search: int,
        revision: int = 0,
        scope: ScopeModel | None = None,
        calibrated_at: datetime | None = None,
    ):
        self.pool, self.index, self.lexical, self.settings, self.ef_search = pool, index, lexical, settings, ef_search
        self.revision = revision  # of the index when loaded: a later ingest changes it
        self.scope, self.calibrated_at = scope, calibrated_at  # None: not calibrated (when loaded)

    @classmethod
    async def load(
        cls, pool: asyncpg.Pool, index: IndexRecord, settings: RetrievalSettings, lexical: LexicalSettings, ef_search: int
    ) -> Retriever:
        async with pool.acquire() as conn:
            store = IndexStore(conn)
            revision = await store.revision(index)
            stored_scope = await store.scope(index)
        scope, calibrated_at = (ScopeModel.model_validate(stored_scope[0]), stored_scope[1]) if stored_scope else (None, None)
        lexical_index = await load_lexical_index(pool, index, lexical)
        return cls(pool, index, lexical_index, settings, ef_search, revision, scope, calibrated_at)

    def scope_features(self, query: str, hits: list[SearchHit]) -> ScopeFeatures:
        return scope_features(query, hits, self.lexical)

    def candidates(self, request: RetrievalRequest) -> int:
        return max(self.settings.candidates, request.k, request.lexical_k)

    def lexical_ranking(self, request: RetrievalRequest) -> Ranked:
        """BM25 candidates; CPU only, so it can run while the query's vector is computed elsewhere."""
        if request.mode not in (RetrievalMode.LEXICAL, RetrievalMode.HYBRID):
            return []
        if self.lexical is None:
            raise LexicalIndexMissing(f"index {self.index.config.name!r} has no BM25 index yet: re-run `docent ingest`")
        return [(h.chunk_id, h.score) for h in self.lexical.search(request.query, self.candidates(request))]

    async def search(self, request: RetrievalRequest, lexical: Ranked | None = None) -> list[SearchHit]:
        candidates = self.candidates(request)
        if lexical is None:
            lexical = self.lexical_ranking(request)
        semantic: Ranked = []
        async with self.pool.acquire() as conn:
            store = IndexStore(conn)
            if request.mode in (RetrievalMode.SEMANTIC, RetrievalMode.HYBRID):
                if request.vector is None:
                    raise ValueError("semantic retrieval needs the query's vector")
                semantic = await store.semantic_search(self.index, request.vector, candidates, self.ef_search)
            chunks = await store.chunks_by_id(self.index, {i for i, _ in semantic + lexical})
            # A BM25 index loaded before a re-ingest may name chunks that are gone since.
            lexical = [(chunk_id, score) for chunk_id, score in lexical if chunk_id in chunks]
            ranked = self._combine(semantic, lexical, request, lambda chunk_id: page_of(chunks[chunk_id].source))
            texts = await self._texts(store, ranked, chunks, request.strategy)
            continuations = await self._continuations(store, ranked, request.strategy)
        similarities = dict(semantic)
        return [
            SearchHit(
                rank=rank,
                score=score,
                similarity=similarities.get(chunk_id),
                source=chunks[chunk_id].source,
                text=texts[chunk_id],
                chunk_id=chunk_id,
                section_title=chunks[chunk_id].section_title,
                page_title=chunks[chunk_id].page_title,
                continuation=continuations.get(chunk_id, ""),
            )
            for rank, (chunk_id, score) in enumerate(ranked, start=1)
        ]

    async def _texts(self, store: IndexStore, ranked: Ranked, chunks: dict, strategy: Strategy) -> dict[int, str]:
        """Each hit's text: the chunk itself, or widened to its neighbours or its section."""
        if strategy == "chunks":
            return {chunk_id: chunks[chunk_id].text for chunk_id, _ in ranked}
        window = self.settings.window if strategy == Strategy.SENTENCE_WINDOW else None
        sections = await store.section_context(self.index, [chunk_id for chunk_id, _ in ranked], window)
        budget = self.settings.section_budget if strategy == Strategy.PARENT_SECTION else None
        texts = {}
        for chunk_id, _ in ranked:
            pieces, position = sections[chunk_id]
            texts[chunk_id] = join_pieces(around(pieces, position, budget) if budget else pieces)
        return texts

    async def _continuations(self, store: IndexStore, ranked: Ranked, strategy: Strategy) -> dict[int, str]:
        """The text after each of the top chunks in its section (what an answer quoting its last
        sentence may need); wider strategies' texts already hold their neighbours."""
        top = [chunk_id for chunk_id, _ in ranked[: self.settings.continuation_hits]]
        if strategy != Strategy.CHUNKS or not top:
            return {}
        sections = await store.section_context(self.index, top, 1)
        following = {}
        for chunk_id in top:
            pieces, position = sections[chunk_id]
            if position + 1 < len(pieces):
                following[chunk_id] = join_pieces(pieces[position : position + 2])[len(pieces[position].text) :].lstrip("\n")
        return following

    def _combine(self, semantic: Ranked, lexical: Ranked, request: RetrievalRequest, page) -> Ranked:
        per_page = self.settings.max_chunks_per_page
        if request.mode == RetrievalMode.SEMANTIC:
            return limit_per_page(semantic, page, per_page, request.k)
        if request.mode == "lexical":
            return limit_per_page(lexical, page, per_page, request.k)
        if (request.fusion or self.settings.fusion) == "reference":
            return insert_lexical(
                limit_per_page(semantic, page, per_page, request.k),
                limit_per_page(lexical, page, per_page, request.lexical_k),
                position=request.lexical_k,
            )
        rankings, weights = [semantic, lexical], [1.0, self.settings.lexical_weight if request.lexical_k else 0.0]
        fused = reciprocal_rank_fusion(rankings, weights, self.settings.rrf_k)
        fused = with_page_evidence(fused, rankings, weights, self.settings.rrf_k, page, self.settings.page_weight)
        return limit_per_page(fused, page, per_page, request.k)


async def load_lexical_index(pool: asyncpg.Pool, index: IndexRecord, settings: LexicalSettings) -> LexicalIndex | None:
    """The persisted BM25 index (bm25s), or one built now for the rank-bm25 backend."""
    async with pool.acquire() as conn:
        store = IndexStore(conn)
        if settings.backend == LexicalBackend.RANK_BM25:
            ids, chunks = await store.chunk_texts(index)
            texts = [c.embedding_text if index.config.include_titles else c.text for c in chunks]
            return LexicalIndex.build(ids, texts, settings)
        stored = await store.load_lexical(index)
        if stored is None:
            return None
        revision, checksum, payload = stored
        if revision != await store.revision(index):
            raise LexicalIndexError(
                f"the BM25 index of {index.config.name!r} is older than its chunks (an ingest was interrupted): "
                "re-run `docent ingest` to finish it"
            )
    return LexicalIndex.from_bytes(payload, checksum)
