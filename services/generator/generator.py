"""Answers from the retrieved sources: the chosen LLM, then its fallbacks, then extractively.

`Generator.generate` streams events: the answer's text pieces, a `FallbackEvent` each
time an LLM fails before saying anything (the next one in the chain is then tried), and
a final `DoneEvent` naming the LLM that answered, its usage and cost. An LLM that fails
after some of its answer was streamed is not replaced: its `LLMFailure` propagates, since
a half-answer must not be silently continued by another LLM. `generate_all` (an answer
not streamed) shows nothing before the end, so there a failure midway falls back too.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace

from docent.citations import CitationChecker, best_sentence, claims
from docent.errors import UpstreamFailure
from docent.llm import LLMClient, LLMFailure, cost_of, open_llm, require_llm
from docent.scope import says_not_covered
from docent.settings import GenerationSettings, LLMSettings
from docent.tokenizer import Tokenizer, load_tokenizer
from docent.types import EXTRACTIVE_LLM as EXTRACTIVE
from docent.types import Citation, Fallback, SearchHit, Usage
from services.generator.extractive import ExtractiveGenerator
from services.generator.prompt import build_messages


@dataclass
class TokenEvent:
    text: str


@dataclass
class FallbackEvent:
    """An LLM failed before answering; the next one in the chain is tried."""

    llm: str
    reason: str


@dataclass
class DoneEvent:
    llm: str
    usage: Usage
    cost: float
    sources_used: int  # the answer saw (and may cite) sources 1 … sources_used
    abstained: bool = False  # the answer says the sources don't cover the question
    citations: list[Citation] = field(default_factory=list)
    snippets: dict[int, str] = field(default_factory=dict)  # source number → the part of it the answer used


GenerationEvent = TokenEvent | FallbackEvent | DoneEvent


class GenerationFailed(UpstreamFailure, RuntimeError):
    """Every LLM of the chain failed; `failures` says why, in order."""

    def __init__(self, failures: Sequence[Fallback]):
        reasons = "; ".join(f"{f.llm}: {f.reason}" for f in failures)
        super().__init__(f"no LLM could answer ({reasons})")
        self.failures = list(failures)

    def __reduce__(self):  # crosses Serve's process boundary with its fields
        return type(self), (self.failures,)


class Generator:
    def __init__(
        self,
        settings: GenerationSettings,
        extractive: ExtractiveGenerator | None,
        clients: dict[str, LLMClient] | None = None,
        tokenizers: dict[str, Tokenizer] | None = None,
        not_covered: str = "The documentation doesn't seem to cover this.",
    ):
        self.settings = settings
        self.extractive = extractive
        self.not_covered = not_covered  # what an answer says when the sources don't answer
        embedder = extractive.embedder if extractive is not None else None
        self.checker = CitationChecker(embedder, settings.citation_threshold)
        self._llms: dict[str, LLMSettings] = {llm.name: llm for llm in settings.llms}
        self._clients: dict[str, LLMClient] = dict(clients or {})
        self._tokenizers: dict[str, Tokenizer] = dict(tokenizers or {})
        self._check_fallback_names()

    @property
    def llm_names(self) -> list[str]:
        return list(self._llms)

    @property
    def known_names(self) -> list[str]:
        """What a request may ask for: the configured LLMs, and `extractive` when available."""
        return self.llm_names + ([EXTRACTIVE] if self.extractive is not None else [])

    def chain(self, chosen: str) -> list[str]:
        """`chosen`, then its fallbacks without repeats, then `extractive` when it may answer."""
        require_llm(chosen, self.known_names)
        if chosen == EXTRACTIVE:
            return [EXTRACTIVE]
        fallbacks = self.settings.fallback if self.settings.fallback is not None else self.llm_names
        chain = [name for name in dict.fromkeys([chosen, *fallbacks]) if name in self.known_names]
        if self.settings.extractive_fallback and self.extractive is not None and EXTRACTIVE not in chain:
            chain.append(EXTRACTIVE)
        return chain

    async def generate(
        self, question: str, hits: Sequence[SearchHit], llm: str, held: bool = False
    ) -> AsyncIterator[GenerationEvent]:
        """The answer's events; `held`: each LLM's answer is given only once it is whole, so one that
        fails midway is replaced like one that failed before its first word (nothing was shown)."""
        chain = self.chain(llm)
        failures: list[Fallback] = []
        for position, name in enumerate(chain):
            streamed: list[str] = []
            holding: list[GenerationEvent] = []
            try:
                async for event in self._answer_with(name, question, hits):
                    if isinstance(event, TokenEvent):
                        streamed.append(event.text)
                    elif isinstance(event, DoneEvent):
                        event = await asyncio.to_thread(self.checked, event, "".join(streamed), hits)
                    if held:
                        holding.append(event)
                    else:
                        yield event
                for event in holding:
                    yield event
                return
            except LLMFailure as failure:
                if streamed and not held:
                    raise
                reason = f"{failure.reason}, midway through its answer" if streamed else failure.reason
                failures.append(Fallback(llm=name, reason=reason))
                if position + 1 < len(chain):
                    yield FallbackEvent(llm=name, reason=reason)
        raise GenerationFailed(failures)

    async def generate_all(self, question: str, hits: Sequence[SearchHit], llm: str) -> list[GenerationEvent]:
        """The whole answer's events at once: for callers that do not stream (one message, not one per
        token). Nothing is shown before the end, so an LLM failing midway falls back too."""
        return [event async for event in self.generate(question, hits, llm, held=True)]

    def checked(self, done: DoneEvent, answer: str, hits: Sequence[SearchHit]) -> DoneEvent:
        """`done` with the answer's citations checked, the snippets of the sources it cites,
        and whether it says the sources don't cover the question."""
        texts = [hit.text for hit in hits]
        citations = self.checker.check(answer, texts)
        snippets: dict[int, list[str]] = {}
        for claim in claims(answer):
            for number in claim.sources:
                if 1 <= number <= len(texts):
                    sentence = best_sentence(claim.text, texts[number - 1])
                    if sentence not in snippets.setdefault(number, []):
                        snippets[number].append(sentence)
        return replace(
            done,
            abstained=says_not_covered(answer, self.not_covered),
            citations=citations,
            snippets={number: " … ".join(parts) for number, parts in snippets.items()},
        )

    def cost(self, llm: str, usage: Usage) -> float:
        settings = self._llms.get(llm)
        if settings is None:  # extractive: no LLM, no cost
            return 0.0
        return cost_of(settings, usage)

    async def ready(self) -> dict[str, str]:
        """LLM endpoints are not probed: a failing one is handled by the fallback chain, per request."""
        return {}

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        await asyncio.gather(*(client.aclose() for client in clients))

    # --- one LLM ------------------------------------------------------------------------

    def _answer_with(self, name: str, question: str, hits: Sequence[SearchHit]) -> AsyncIterator[GenerationEvent]:
        if name == EXTRACTIVE:
            return self._answer_extractively(question, hits)
        return self._answer_with_llm(name, question, hits)

    async def _answer_with_llm(
        self, name: str, question: str, hits: Sequence[SearchHit]
    ) -> AsyncIterator[GenerationEvent]:
        llm = self._llms[name]
        # Loading a tokenizer the first time reads files and imports transformers: off the event loop.
        tokenizer = await asyncio.to_thread(self._tokenizer, name)
        budget = int(llm.context_length * self.settings.context_fraction)
        prompt = build_messages(self.settings.system_prompt, question, hits, budget, tokenizer)
        usage = Usage()
        async for piece in self._client(name).stream(prompt.messages):
            if isinstance(piece, Usage):
                usage = piece
            else:
                yield TokenEvent(piece)
        yield DoneEvent(llm=name, usage=usage, cost=self.cost(name, usage), sources_used=prompt.sources_used)

    async def _answer_extractively(self, question: str, hits: Sequence[SearchHit]) -> AsyncIterator[GenerationEvent]:
        assert self.extractive is not None  # chain() only lists it when there is one
        # Embedding the sentences is CPU-bound: a thread keeps the event loop serving others.
        answer = await asyncio.to_thread(self.extractive.answer, question, hits)
        pieces = list(answer.tokens()) if answer.passages else re.findall(r"\S+\s*", self.not_covered)
        for piece in pieces:
            yield TokenEvent(piece)
        usage = Usage(prompt_tokens=0, completion_tokens=len(pieces))
        yield DoneEvent(llm=EXTRACTIVE, usage=usage, cost=0.0, sources_used=len(hits))

    def _tokenizer(self, name: str) -> Tokenizer:
        if name not in self._tokenizers:
            client = self._clients.get(name)
            self._tokenizers[name] = client.tokenizer if client else load_tokenizer(self._llms[name].tokenizer)
        return self._tokenizers[name]

    def _client(self, name: str) -> LLMClient:
        if name not in self._clients:
            self._clients[name] = open_llm(self._llms[name], self.settings.temperature, self._tokenizer(name))
        return self._clients[name]

    def _check_fallback_names(self) -> None:
        unknown = [n for n in self.settings.fallback or [] if n not in self._llms and n != EXTRACTIVE]
        if unknown:
            raise ValueError(f"generation.fallback names unknown LLMs {unknown}; configured: {self.llm_names}")


_END = object()


async def coalesce(events: AsyncIterator[GenerationEvent]) -> AsyncIterator[list[GenerationEvent]]:
    """Events in batches of those ready together; an error comes after the events before it."""
    queue: asyncio.Queue = asyncio.Queue()

    async def produce() -> None:
        try:
            async for event in events:
                queue.put_nowait(event)
            queue.put_nowait(_END)
        except Exception as exc:  # noqa: BLE001 - re-raised to the consumer, after the events before it
            queue.put_nowait(exc)

    producer = asyncio.ensure_future(produce())
    try:
        while True:
            batch = [await queue.get()]
            while not queue.empty():
                batch.append(queue.get_nowait())
            end = batch[-1] if batch[-1] is _END or isinstance(batch[-1], Exception) else None
            if end is not None:
                batch.pop()
            if batch:
                yield batch
            if isinstance(end, Exception):
                raise end
            if end is _END:
                return
    finally:
        producer.cancel()
