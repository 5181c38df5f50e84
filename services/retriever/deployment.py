"""The retriever deployment: hybrid search over pgvector and BM25, the query embedded by the embedder."""

from __future__ import annotations

import asyncio
import time

from ray import serve
from ray.serve.handle import DeploymentHandle
from ray.serve.metrics import Histogram

from docent.observability import LATENCY_BUCKETS, send_logs_to_serve
from docent.settings import Settings
from docent.types import QueryOptions
from services.retriever.service import RetrievalResult, RetrieverService


@serve.deployment(name="retriever", max_ongoing_requests=64, ray_actor_options={"num_cpus": 0.2})
class RetrieverDeployment:
    async def __init__(self, settings: Settings, embedder: DeploymentHandle):
        send_logs_to_serve(settings.serving.log_flush_s)  # docent's log lines join the replica's JSON log
        self.embedder, self.timeout_s = embedder, settings.serving.readiness_timeout_s
        self.service = RetrieverService(settings, lambda query, model: embedder.embed.remote(query, model))
        self.latency = Histogram(
            "docent_retrieve_seconds", "Search latency (embedding included) by mode and strategy",
            list(LATENCY_BUCKETS), tag_keys=("mode", "strategy"),
        )
        await self.service.start()

    async def search(self, query: str, index: str | None, options: QueryOptions) -> RetrievalResult:
        started = time.perf_counter()
        result = await self.service.search(query, index, options)
        self.latency.observe(time.perf_counter() - started, tags={"mode": result.mode, "strategy": result.strategy})
        return result

    async def ready(self) -> dict[str, str]:
        """The retriever's own problems and the embedder's, which only the retriever calls."""
        problems = await self.service.ready()
        try:
            problems.update(await asyncio.wait_for(self.embedder.ready.remote(), self.timeout_s))
        except Exception as exc:  # noqa: BLE001 - any failure to answer is the problem reported
            problems["embedder"] = f"not responding: {type(exc).__name__} {exc}".strip()
        return problems

    async def __del__(self):
        await self.service.close()
