"""The four stages the query pipeline calls, as typed protocols, and their Serve-handle adapters.

In one process the stage objects themselves (`RetrieverService`, `RerankerService`,
`RouterService`, `LocalGenerator`) satisfy the protocols; in the Serve application the
`Remote*` adapters do, calling the deployments' handles. Both return the same shapes, so
the pipeline's code is the same in both and never calls a stage by a method's name.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Protocol

from docent.tags import TagPrediction
from docent.types import QueryOptions, Route, SearchHit
from services.generator.generator import GenerationEvent, Generator, coalesce
from services.retriever.service import RetrievalResult

if TYPE_CHECKING:
    from ray.serve.handle import DeploymentHandle


class Stage(Protocol):
    async def ready(self) -> dict[str, str]:
        """What keeps the stage from answering, keyed by what is wrong; empty when nothing does."""
        ...


class RetrieverStage(Stage, Protocol):
    async def search(self, query: str, index: str | None, options: QueryOptions) -> RetrievalResult: ...


class RerankerStage(Stage, Protocol):
    async def enabled(self) -> bool: ...

    async def predict(self, query: str) -> TagPrediction | None: ...

    async def cross_rerank(self, query: str, hits: list[SearchHit]) -> list[SearchHit]: ...


class RouterStage(Stage, Protocol):
    async def route(self, query: str, requested: str | None = None) -> Route: ...


class GeneratorStage(Stage, Protocol):
    def batches(self, question: str, hits: Sequence[SearchHit], llm: str) -> AsyncIterator[list[GenerationEvent]]:
        """The answer's events, in batches of those ready together."""
        ...

    async def generate_all(self, question: str, hits: Sequence[SearchHit], llm: str) -> list[GenerationEvent]: ...


class LocalGenerator:
    """A `Generator` in this process, as a stage: its events batched as the deployment batches them."""

    def __init__(self, generator: Generator):
        self.generator = generator

    def batches(self, question: str, hits: Sequence[SearchHit], llm: str) -> AsyncIterator[list[GenerationEvent]]:
        return coalesce(self.generator.generate(question, hits, llm))

    async def generate_all(self, question: str, hits: Sequence[SearchHit], llm: str) -> list[GenerationEvent]:
        return await self.generator.generate_all(question, hits, llm)

    async def ready(self) -> dict[str, str]:
        return await self.generator.ready()

    async def aclose(self) -> None:
        await self.generator.aclose()


class RemoteRetriever:
    def __init__(self, handle: DeploymentHandle):
        self._handle = handle

    async def search(self, query: str, index: str | None, options: QueryOptions) -> RetrievalResult:
        return await self._handle.search.remote(query, index, options)

    async def ready(self) -> dict[str, str]:
        return await self._handle.ready.remote()


class RemoteReranker:
    def __init__(self, handle: DeploymentHandle):
        self._handle = handle

    async def enabled(self) -> bool:
        return await self._handle.enabled.remote()

    async def predict(self, query: str) -> TagPrediction | None:
        return await self._handle.predict.remote(query)

    async def cross_rerank(self, query: str, hits: list[SearchHit]) -> list[SearchHit]:
        return await self._handle.cross_rerank.remote(query, hits)

    async def ready(self) -> dict[str, str]:
        return await self._handle.ready.remote()


class RemoteRouter:
    def __init__(self, handle: DeploymentHandle):
        self._handle = handle

    async def route(self, query: str, requested: str | None = None) -> Route:
        return await self._handle.route.remote(query, requested)

    async def ready(self) -> dict[str, str]:
        return await self._handle.ready.remote()


class RemoteGenerator:
    def __init__(self, handle: DeploymentHandle):
        self._handle = handle

    def batches(self, question: str, hits: Sequence[SearchHit], llm: str) -> AsyncIterator[list[GenerationEvent]]:
        return _cancel_on_exit(self._handle.options(stream=True).batches.remote(question, hits, llm))

    async def generate_all(self, question: str, hits: Sequence[SearchHit], llm: str) -> list[GenerationEvent]:
        return await self._handle.generate_all.remote(question, hits, llm)

    async def ready(self) -> dict[str, str]:
        return await self._handle.ready.remote()


async def _cancel_on_exit(response) -> AsyncIterator[list[GenerationEvent]]:
    """Items of a streaming handle call; a consumer that stops early cancels the replica's work."""
    finished = False
    try:
        async for item in response:
            yield item
        finished = True
    finally:
        if not finished:
            response.cancel()
