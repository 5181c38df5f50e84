"""The generator deployment: streams the answer of the chosen LLM, down the fallback chain if needed."""

from __future__ import annotations

from collections.abc import AsyncIterator

from ray import serve

from docent.observability import send_logs_to_serve
from docent.settings import Settings
from docent.types import SearchHit
from services.generator.extractive import load_extractive
from services.generator.generator import GenerationEvent, Generator, coalesce


@serve.deployment(name="generator", max_ongoing_requests=64, ray_actor_options={"num_cpus": 0.2})
class GeneratorDeployment:
    def __init__(self, settings: Settings):
        send_logs_to_serve()  # docent's log lines join the replica's JSON log, with the request id
        # Always loaded: a request may ask for the extractive answer by name.
        self.generator = Generator(settings.generation, load_extractive(settings.embedding, settings.generation))

    async def generate(self, question: str, hits: list[SearchHit], llm: str) -> AsyncIterator[list[GenerationEvent]]:
        """The generator's events in batches: whatever is ready goes as one item.

        Every streamed item costs a message between processes; an extractive answer (all
        ready at once) thus crosses as one, an LLM's as its tokens arrive.
        """
        async for batch in coalesce(self.generator.generate(question, hits, llm)):
            yield batch

    async def generate_all(self, question: str, hits: list[SearchHit], llm: str) -> list[GenerationEvent]:
        return await self.generator.generate_all(question, hits, llm)

    async def ready(self) -> dict[str, str]:
        return await self.generator.ready()
