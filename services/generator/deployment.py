"""The generator deployment: streams the answer of the chosen LLM, down the fallback chain if needed."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable

from ray import serve
from ray.serve.metrics import Counter, Histogram

from docent.observability import LATENCY_BUCKETS, add, send_logs_to_serve
from docent.settings import Settings
from docent.types import SearchHit
from services.generator.extractive import load_extractive
from services.generator.generator import DoneEvent, FallbackEvent, GenerationEvent, Generator, coalesce


@serve.deployment(name="generator", max_ongoing_requests=64, ray_actor_options={"num_cpus": 0.2})
class GeneratorDeployment:
    def __init__(self, settings: Settings):
        send_logs_to_serve(settings.serving.log_flush_s)  # docent's log lines join the replica's JSON log
        # Always loaded: a request may ask for the extractive answer by name.
        self.generator = Generator(
            settings.generation, load_extractive(settings.embedding, settings.generation), not_covered=settings.abstention.answer
        )
        self.answers = Counter("docent_generated_answers", "Answers by the LLM that gave them", tag_keys=("llm",))
        self.tokens = Counter("docent_generated_tokens", "Tokens by LLM and kind", tag_keys=("llm", "kind"))
        self.cost = Counter("docent_generated_cost_dollars", "Estimated LLM cost", tag_keys=("llm",))
        self.fallbacks = Counter("docent_generator_fallbacks", "LLM failures passed down the chain", tag_keys=("llm",))
        self.latency = Histogram(
            "docent_generate_seconds", "Time to the whole answer by LLM", list(LATENCY_BUCKETS), tag_keys=("llm",)
        )

    async def batches(self, question: str, hits: list[SearchHit], llm: str) -> AsyncIterator[list[GenerationEvent]]:
        """The generator's events in batches: whatever is ready goes as one item.

        Every streamed item costs a message between processes; an extractive answer (all
        ready at once) thus crosses as one, an LLM's as its tokens arrive.
        """
        started = time.perf_counter()
        async for batch in coalesce(self.generator.generate(question, hits, llm)):
            self._record(batch, started)
            yield batch

    async def generate_all(self, question: str, hits: list[SearchHit], llm: str) -> list[GenerationEvent]:
        started = time.perf_counter()
        events = await self.generator.generate_all(question, hits, llm)
        self._record(events, started)
        return events

    def _record(self, events: Iterable[GenerationEvent], started: float) -> None:
        for event in events:
            if isinstance(event, FallbackEvent):
                self.fallbacks.inc(tags={"llm": event.llm})
            elif isinstance(event, DoneEvent):
                tags = {"llm": event.llm}
                self.answers.inc(tags=tags)
                add(self.tokens, event.usage.prompt_tokens, {**tags, "kind": "prompt"})
                add(self.tokens, event.usage.completion_tokens, {**tags, "kind": "completion"})
                add(self.cost, event.cost, tags)
                self.latency.observe(time.perf_counter() - started, tags=tags)

    async def ready(self) -> dict[str, str]:
        return await self.generator.ready()
