"""The generator deployment: streams the answer of the chosen LLM, down the fallback chain if needed."""

from __future__ import annotations

from collections.abc import AsyncIterator

from ray import serve

from docent.settings import Settings
from docent.types import SearchHit
from services.generator.extractive import load_extractive
from services.generator.generator import GenerationEvent, Generator


@serve.deployment(name="generator", max_ongoing_requests=64, ray_actor_options={"num_cpus": 0.2})
class GeneratorDeployment:
    def __init__(self, settings: Settings):
        # Always loaded: a request may ask for the extractive answer by name.
        self.generator = Generator(settings.generation, load_extractive(settings.embedding, settings.generation))

    async def generate(self, question: str, hits: list[SearchHit], llm: str) -> AsyncIterator[GenerationEvent]:
        async for event in self.generator.generate(question, hits, llm):
            yield event

    async def ready(self) -> dict[str, str]:
        return {}
