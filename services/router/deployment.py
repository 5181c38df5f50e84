"""The router deployment: open-source or strong LLM for each question."""

from __future__ import annotations

from ray import serve

from docent.observability import send_logs_to_serve
from docent.settings import Settings
from docent.types import Route
from services.router.service import RouterService


@serve.deployment(name="router", max_ongoing_requests=64, ray_actor_options={"num_cpus": 0.2})
class RouterDeployment:
    def __init__(self, settings: Settings):
        send_logs_to_serve()  # docent's log lines join the replica's JSON log, with the request id
        self.service = RouterService(settings)

    async def route(self, query: str, requested: str | None = None) -> Route:
        return await self.service.route(query, requested)

    async def ready(self) -> dict[str, str]:
        return await self.service.ready()
