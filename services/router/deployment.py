"""The router deployment: open-source or strong LLM for each question."""

from __future__ import annotations

from ray import serve
from ray.serve.metrics import Counter

from docent.observability import send_logs_to_serve
from docent.settings import Settings
from docent.types import Route
from services.router.service import RouterService


@serve.deployment(name="router", max_ongoing_requests=64, ray_actor_options={"num_cpus": 0.2})
class RouterDeployment:
    def __init__(self, settings: Settings):
        send_logs_to_serve(settings.serving.log_flush_s)  # docent's log lines join the replica's JSON log
        self.service = RouterService(settings)
        self.decisions = Counter("docent_router_decisions", "LLMs the router chose", tag_keys=("llm",))

    async def route(self, query: str, requested: str | None = None) -> Route:
        route = await self.service.route(query, requested)
        self.decisions.inc(tags={"llm": route.llm})
        return route

    async def ready(self) -> dict[str, str]:
        return await self.service.ready()
