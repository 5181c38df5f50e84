"""The reranker deployment: the tag classifier and the optional cross-encoder."""

from __future__ import annotations

from ray import serve

from docent.observability import send_logs_to_serve
from docent.settings import Settings
from docent.tags import TagPrediction
from docent.types import SearchHit
from services.reranker.service import RerankerService


@serve.deployment(name="reranker", max_ongoing_requests=64, ray_actor_options={"num_cpus": 0.2})
class RerankerDeployment:
    def __init__(self, settings: Settings):
        send_logs_to_serve(settings.serving.log_flush_s)  # docent's log lines join the replica's JSON log
        self.service = RerankerService(settings)

    async def predict(self, query: str) -> TagPrediction | None:
        return await self.service.predict(query)

    async def cross_rerank(self, query: str, hits: list[SearchHit]) -> list[SearchHit]:
        return await self.service.cross_rerank(query, hits)

    async def enabled(self) -> bool:
        return await self.service.enabled()

    async def ready(self) -> dict[str, str]:
        return await self.service.ready()
