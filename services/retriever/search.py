"""In-process retrieval over an index, for the CLI and the benchmarks (no Ray Serve)."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
import numpy as np

from docent.db import create_pool
from docent.embedding.model import Embedder
from docent.embedding.onnx import load_backend_embedder
from docent.settings import Settings
from docent.store import IndexRecord, IndexStore
from docent.types import QueryOptions, RetrievalMode, SearchHit, Strategy
from services.retriever.retriever import RetrievalRequest, Retriever


@dataclass
class LocalSearch:
    """An index opened with its own embedding model and BM25 index."""

    pool: asyncpg.Pool
    index: IndexRecord
    embedder: Embedder
    retriever: Retriever
    settings: Settings

    @classmethod
    async def open(cls, settings: Settings) -> LocalSearch:
        pool = await create_pool(settings)
        try:
            async with pool.acquire() as conn:
                index = await IndexStore(conn).require(settings.index_name)
            # Queries embedded as the query service embeds them (embedding.query_backend).
            embedding = settings.embedding.model_copy(update={"model": index.config.embedding_model})
            embedder = load_backend_embedder(embedding, embedding.query_backend, settings.onnx_dir)
            retriever = await Retriever.load(
                pool, index, settings.retrieval, settings.lexical, settings.database.hnsw_ef_search
            )
        except BaseException:
            await pool.close()
            raise
        return cls(pool, index, embedder, retriever, settings)

    async def search(
        self,
        query: str,
        *,
        mode: RetrievalMode | None = None,
        k: int | None = None,
        lexical_k: int | None = None,
        strategy: Strategy | None = None,
        vector: np.ndarray | None = None,
    ) -> list[SearchHit]:
        """The index's hits for `query`; `vector`: its embedding when already computed (a benchmark's many variants)."""
        options = QueryOptions(mode=mode, num_chunks=k, lexical_k=lexical_k, strategy=strategy)
        request = RetrievalRequest.resolve(query, options, self.settings.retrieval)
        if request.mode != RetrievalMode.LEXICAL:
            request.vector = vector if vector is not None else self.embed_queries([query])[0]
        return await self.retriever.search(request)

    def embed_queries(self, queries: list[str]) -> np.ndarray:
        return self.embedder.embed([self.settings.embedding.query_prefix + q for q in queries])

    async def close(self) -> None:
        await self.pool.close()


async def search_index(query: str, settings: Settings) -> list[SearchHit]:
    local = await LocalSearch.open(settings)
    try:
        return await local.search(query)
    finally:
        await local.close()
