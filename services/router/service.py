"""The router as a service: which LLM answers a question."""

from __future__ import annotations

import logging

from docent.linear_text import ArtifactError
from docent.routing import Router
from docent.settings import Settings
from docent.types import Route
from services.router.router import choose_llm

log = logging.getLogger(__name__)


class RouterService:
    def __init__(self, settings: Settings):
        self.generation = settings.generation
        self.router: Router | None = None
        self.problem: str | None = None
        path = settings.model_artifact("router")
        if self._needs_router() and path.exists():
            try:
                self.router = Router.load(path, settings.router.threshold)
            except ArtifactError as exc:
                self.problem = str(exc)

    def _needs_router(self) -> bool:
        return bool(self.generation.oss_llm and self.generation.strong_llm)

    async def route(self, query: str, requested: str | None = None) -> Route:
        decision = None
        if self.router is not None and not requested:
            decision = self.router.decide([query])[0]
        g = self.generation
        return choose_llm(decision, [llm.name for llm in g.llms], g.oss_llm, g.strong_llm, requested)

    async def ready(self) -> dict[str, str]:
        return {"router": self.problem} if self.problem else {}
