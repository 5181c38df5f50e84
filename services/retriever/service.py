"""The retriever as a long-lived service: a connection pool, loaded indexes, hybrid search.

Each index is loaded once (its record and BM25 index) and reloaded when an ingest
changes it. The query's vector comes from an `embed` callable (the embedder deployment
in Serve, a local model in-process); BM25 runs while that vector is computed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg
import numpy as np

from docent.db import CONNECTION_ERRORS, DatabaseError, DatabaseUnavailable, EmbeddedRevival, create_pool
from docent.scope import ScopeModel, ScopeVerdict
from docent.settings import Settings
from docent.store import IndexStore
from docent.types import QueryOptions, RetrievalMode, SearchHit, Strategy
from services.retriever.retriever import RetrievalRequest, Retriever

log = logging.getLogger(__name__)

EmbedQuery = Callable[[str, str], Awaitable[np.ndarray]]  # (query, model name) → vector


class IndexLoading(DatabaseError):
    """The index exists but is still being loaded; ask again shortly."""


@dataclass
class RetrievalResult:
    index: str
    hits: list[SearchHit]
    timings_ms: dict[str, float] = field(default_factory=dict)
    mode: RetrievalMode = RetrievalMode.HYBRID  # as resolved for this request
    strategy: Strategy = Strategy.CHUNKS
    scope: ScopeVerdict | None = None  # None: not judged (abstention off)


class RetrieverService:
    def __init__(self, settings: Settings, embed: EmbedQuery):
        self.settings, self.embed = settings, embed
        self.retrievers: dict[str, Retriever] = {}
        self.loading: dict[str, asyncio.Task] = {}
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()
        self._refresher: asyncio.Task | None = None
        self.revival = EmbeddedRevival(settings)

    async def start(self) -> None:
        """Preload the default index in the background; requests meanwhile get 503s, not waits."""
        if self.settings.serving.index_preload:
            self._start_loading(self.settings.index_name)
        self._refresher = asyncio.get_running_loop().create_task(self._refresh_forever())

    def _unreachable(self, exc: BaseException) -> DatabaseUnavailable:
        """The 503 for a lost database; the embedded one is started again meanwhile."""
        self.revival.revive()
        return DatabaseUnavailable(f"the database is unreachable ({type(exc).__name__}: {exc})")

    async def pool(self) -> asyncpg.Pool:
        async with self._pool_lock:
            if self._pool is None:
                self._pool = await create_pool(self.settings)
            return self._pool

    async def retriever(self, name: str) -> Retriever:
        if name in self.retrievers:
            return self.retrievers[name]
        task = self.loading.get(name)
        if task is None:
            await self._require_index(name)  # an unknown index is a 404 now, not a 503 first
            task = self._start_loading(name)
        if not task.done():
            raise IndexLoading(f"index {name!r} is loading; try again in a few seconds")
        self.loading.pop(name, None)
        task.result()  # a failed load raises its error (not found, database down) to this request
        return self.retrievers[name]

    async def _require_index(self, name: str) -> None:
        try:
            async with (await self.pool()).acquire() as conn:
                await IndexStore(conn).require(name)
        except CONNECTION_ERRORS as exc:
            raise self._unreachable(exc) from exc

    def _start_loading(self, name: str) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(self._load(name))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # failures are read by requests
        self.loading[name] = task
        return task

    async def _load(self, name: str) -> None:
        pool = await self.pool()
        try:
            async with pool.acquire() as conn:
                index = await IndexStore(conn).require(name)
            s = self.settings
            self.retrievers[name] = await Retriever.load(pool, index, s.retrieval, s.lexical, s.database.hnsw_ef_search)
        except CONNECTION_ERRORS as exc:
            raise self._unreachable(exc) from exc
        log.info("index %s loaded", name)

    async def search(self, query: str, index: str | None, options: QueryOptions) -> RetrievalResult:
        name = index or self.settings.index_name
        retriever = await self.retriever(name)
        request = RetrievalRequest.resolve(query, options, self.settings.retrieval)
        started = time.perf_counter()
        vector_task = None
        if request.mode != RetrievalMode.LEXICAL:
            vector_task = asyncio.ensure_future(self.embed(query, retriever.index.config.embedding_model))
        try:
            lexical = retriever.lexical_ranking(request)
            embed_ms = 0.0
            if vector_task is not None:
                request.vector = await vector_task
                embed_ms = (time.perf_counter() - started) * 1000
            searched = time.perf_counter()
            hits = await retriever.search(request, lexical)
            scope = self._judge_scope(retriever, query, hits) if self._abstains(options) else None
        except CONNECTION_ERRORS as exc:
            raise self._unreachable(exc) from exc
        finally:
            if vector_task is not None and not vector_task.done():
                vector_task.cancel()
        timings = {"embed": embed_ms, "retrieve": (time.perf_counter() - searched) * 1000}
        return RetrievalResult(name, hits, timings, request.mode, request.strategy, scope)

    def _abstains(self, options: QueryOptions) -> bool:
        return self.settings.abstention.enabled if options.abstain is None else options.abstain

    def _judge_scope(self, retriever: Retriever, query: str, hits: list[SearchHit]) -> ScopeVerdict:
        """The index's calibrated scope model, else the best similarity against the configured floor."""
        model = retriever.scope or ScopeModel.similarity_only(self.settings.abstention.min_similarity)
        features = retriever.scope_features(query, hits)
        score = model.score(features)
        return ScopeVerdict(
            in_scope=score >= model.threshold, score=round(score, 4), threshold=model.threshold, calibrated=retriever.scope is not None
        )

    async def ready(self) -> dict[str, str]:
        """What stands between this service and answering: empty when nothing does."""
        problems: dict[str, str] = {}
        try:
            pool = await self.pool()
            async with pool.acquire(timeout=self.settings.serving.readiness_timeout_s) as conn:
                await conn.fetchval("SELECT 1")
        except (DatabaseError, *CONNECTION_ERRORS) as exc:
            problems["database"] = str(exc) or type(exc).__name__
            return problems
        name = self.settings.index_name
        if name not in self.retrievers:
            try:
                await self.retriever(name)
            except DatabaseError as exc:
                problems["index"] = str(exc)
        return problems

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.serving.index_refresh_s)
            try:
                await self.refresh()
            except Exception as exc:  # noqa: BLE001 - a failed refresh keeps serving the loaded index
                log.warning("index refresh failed: %s", exc)

    async def refresh(self) -> list[str]:
        """Reload the indexes an ingest has changed since they were loaded; returns their names."""
        pool = await self.pool()
        reloaded = []
        for name, retriever in list(self.retrievers.items()):
            async with pool.acquire() as conn:
                store = IndexStore(conn)
                index = await store.get(name)
                if index is None:
                    self.retrievers.pop(name)
                    continue
                unchanged = index == retriever.index and await store.revision(index) == retriever.revision
                if unchanged and await store.scope_calibrated_at(index) == retriever.calibrated_at:
                    continue
            s = self.settings
            self.retrievers[name] = await Retriever.load(pool, index, s.retrieval, s.lexical, s.database.hnsw_ef_search)
            reloaded.append(name)
        return reloaded

    async def close(self) -> None:
        if self._refresher:
            self._refresher.cancel()
        if self._pool is not None:
            await self._pool.close()
