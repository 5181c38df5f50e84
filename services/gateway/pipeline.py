"""The query pipeline: retrieve, rerank, route, generate — the same code in Serve and in-process.

Independent stages run concurrently: the question is classified for reranking and
routed while it is being retrieved (and, inside the retriever, BM25 runs while it is
embedded). Only retrieval and generation sit one after the other.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from docent.errors import UsageError
from docent.llm import require_llm
from docent.observability import current_request_id, new_request_id, tracer
from docent.scope import ScopeVerdict
from docent.settings import Settings
from docent.tags import TagPrediction
from docent.text import page_section_title
from docent.types import (
    EXTRACTIVE_LLM,
    NO_LLM,
    Answer,
    Fallback,
    QueryRequest,
    Route,
    SearchHit,
    Source,
    Turn,
    Usage,
    page_of,
)
from services.gateway.conversation import Condensed, Condenser
from services.gateway.stages import GeneratorStage, RerankerStage, RetrieverStage, RouterStage
from services.generator.generator import DoneEvent, FallbackEvent, TokenEvent
from services.reranker.rerank import rerank
from services.retriever.fusion import limit_per_page
from services.retriever.service import RetrievalResult
from services.router.router import choose_llm


class RequestError(UsageError, ValueError):
    """A request the settings do not allow; `field` names what to fix."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field

    def __reduce__(self):
        return type(self), (self.field, str(self))


@dataclass
class Prepared:
    """A question retrieved, reranked and routed: everything generation needs.

    `id` is the request's id (logs, traces; a client may choose it); `answer_id` is unique.
    `question` is what was searched for and is answered: the asked question, or the
    follow-up made to stand alone (`condensed` says how, and what that cost).
    """

    id: str
    question: str
    index: str
    hits: list[SearchHit]
    route: Route
    started: float
    timings_ms: dict[str, float] = field(default_factory=dict)
    answer_id: str = ""
    scope: ScopeVerdict | None = None  # None: not judged
    conversation_id: str = ""
    condensed: Condensed | None = None

    @property
    def asked(self) -> str:
        return self.condensed.question if self.condensed else self.question

    @property
    def out_of_scope(self) -> bool:
        """The index's scope model says the docs don't cover the question: no LLM is asked."""
        return self.scope is not None and not self.scope.in_scope

    def sources(self, snippets: dict[int, str] | None = None) -> list[Source]:
        """The hits as the answer's sources; with `snippets`, those cited say so and show what was used."""
        snippets = snippets or {}
        return [
            Source(
                number=n, source=h.source, title=page_section_title(h.page_title, h.section_title), text=h.text,
                score=h.score, similarity=h.similarity, cited=n in snippets, snippet=snippets.get(n, ""),
            )
            for n, h in enumerate(self.hits, start=1)
        ]


def _generate_attributes(prepared: Prepared) -> dict[str, Any]:
    return {
        "docent.request_id": prepared.id, "docent.answer_id": prepared.answer_id,
        "docent.llm": prepared.route.llm, "docent.sources": len(prepared.hits),
    }


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


class QueryPipeline:
    def __init__(
        self,
        settings: Settings,
        retriever: RetrieverStage,
        reranker: RerankerStage,
        router: RouterStage,
        generator: GeneratorStage,
    ):
        self.settings = settings
        self.retriever, self.reranker, self.router, self.generator = retriever, reranker, router, generator
        self.llm_names = [llm.name for llm in settings.generation.llms]
        self.condenser = Condenser(settings)
        self._reranker_has_models: bool | None = None

    def validate(self, request: QueryRequest) -> None:
        serving = self.settings.serving
        if len(request.query) > serving.max_query_chars:
            raise RequestError("query", f"the query is {len(request.query)} characters; at most {serving.max_query_chars}")
        chunks = request.options.num_chunks
        if chunks is not None and chunks > serving.max_num_chunks:
            raise RequestError("options.num_chunks", f"num_chunks is {chunks}; at most {serving.max_num_chunks}")
        lexical_k = request.options.lexical_k
        if lexical_k is not None and lexical_k > serving.max_num_chunks:
            raise RequestError("options.lexical_k", f"lexical_k is {lexical_k}; at most {serving.max_num_chunks}")
        llm = request.options.llm
        if llm is not None:
            require_llm(llm, [*self.llm_names, EXTRACTIVE_LLM])  # UnknownLLM: a 422 naming options.llm

    async def condense(self, request: QueryRequest, turns: list[Turn]) -> Condensed:
        """The request's question made to stand alone from the conversation's `turns` (unchanged without any)."""
        self.validate(request)
        with tracer().start_as_current_span("docent.condense"):
            return await self.condenser.condense(request.query, turns)

    async def prepare(self, request: QueryRequest, condensed: Condensed | None = None, conversation_id: str = "") -> Prepared:
        """Retrieve, rerank and route the question (`condensed.standalone`, when a conversation was read)."""
        self.validate(request)
        request_id = current_request_id() or new_request_id()
        answer_id = uuid.uuid4().hex
        attributes = {"docent.request_id": request_id, "docent.answer_id": answer_id}  # traces meet feedback
        search = searched(request, condensed)
        alone = request.query if condensed is not None and condensed.fused else None
        with tracer().start_as_current_span("docent.prepare", attributes=attributes):
            prepared = await self._prepare(search, request_id, answer_id, alone)
        prepared.conversation_id = conversation_id or request.conversation_id or uuid.uuid4().hex
        if condensed is not None and condensed.by:
            prepared.condensed = condensed
            prepared.timings_ms = {"condense": condensed.ms, **prepared.timings_ms}
        return prepared

    async def _prepare(self, request: QueryRequest, request_id: str, answer_id: str, alone: str | None) -> Prepared:
        started = time.perf_counter()
        retrieval = asyncio.ensure_future(self._timed("retrieve", self._search(request, alone)))
        tagging = asyncio.ensure_future(self._timed("tag", self._predict_tag(request)))
        routing = asyncio.ensure_future(self._timed("route", self._route(request)))
        try:
            (result, retrieve_ms), (prediction, tag_ms), (route, route_ms) = await asyncio.gather(
                retrieval, tagging, routing
            )
        except BaseException:
            for task in (retrieval, tagging, routing):
                task.cancel()
            raise
        rerank_started = time.perf_counter()
        with tracer().start_as_current_span("docent.rerank"):
            hits = await self._rerank(request, result.hits, prediction)
        timings = {
            "embed": round(result.timings_ms["embed"], 2),
            "retrieve": round(retrieve_ms - result.timings_ms["embed"], 2),
            "rerank": round(tag_ms + (time.perf_counter() - rerank_started) * 1000, 2),
            "route": round(route_ms, 2),
        }
        return Prepared(request_id, request.query, result.index, hits, route, started, timings, answer_id, result.scope)

    async def _search(self, request: QueryRequest, alone: str | None) -> RetrievalResult:
        """The request's hits; with `alone` (the follow-up as asked), taken in turn with that question's own."""
        if alone is None:
            return await self.retriever.search(request.query, request.index, request.options)
        with_subject, own = await asyncio.gather(
            self.retriever.search(request.query, request.index, request.options),
            self.retriever.search(alone, request.index, request.options),
        )
        hits = interleaved(with_subject.hits, own.hits, self.settings.retrieval.max_chunks_per_page)
        embed_ms = max(with_subject.timings_ms["embed"], own.timings_ms["embed"])
        return dataclasses.replace(with_subject, hits=hits, timings_ms={**with_subject.timings_ms, "embed": embed_ms})

    @staticmethod
    async def _timed(stage: str, call) -> tuple[Any, float]:
        """The call's result and milliseconds, in a span of its own (a task: the span is this task's context)."""
        with tracer().start_as_current_span(f"docent.{stage}"):
            started = time.perf_counter()
            return await call, (time.perf_counter() - started) * 1000

    async def _predict_tag(self, request: QueryRequest) -> TagPrediction | None:
        if request.options.rerank is False or not await self._reranker_enabled():
            return None
        return await self.reranker.predict(request.query)

    async def _reranker_enabled(self) -> bool:
        """Asked once: a reranker without a classifier or cross-encoder is not worth a hop per request."""
        if self._reranker_has_models is None:
            self._reranker_has_models = self.settings.rerank.enabled and await self.reranker.enabled()
        return self._reranker_has_models

    async def _route(self, request: QueryRequest) -> Route:
        """The router's deployment is asked only when it has a choice to make."""
        g = self.settings.generation
        if g.oss_llm and g.strong_llm and not request.options.llm:
            return await self.router.route(request.query, None)
        return choose_llm(None, self.llm_names, g.oss_llm, g.strong_llm, request.options.llm)

    async def _rerank(
        self, request: QueryRequest, hits: list[SearchHit], prediction: TagPrediction | None
    ) -> list[SearchHit]:
        if request.options.rerank is False:
            return hits
        settings = self.settings.rerank
        if prediction is not None:
            tag = prediction.confident(settings.threshold)
            hits = rerank(hits, [h.source for h in hits], tag, settings.base_url, settings.k)  # an unsure tag only cuts
        if settings.cross_encoder_model and await self._reranker_enabled():
            hits = await self.reranker.cross_rerank(request.query, hits)
        return hits

    def abstention(self, prepared: Prepared) -> list[TokenEvent | FallbackEvent | DoneEvent]:
        """The answer to an out-of-scope question: says so and lists the nearest pages; no LLM, no cost."""
        settings = self.settings.abstention
        pages: dict[str, str] = {}
        for hit in prepared.hits:
            pages.setdefault(page_of(hit.source), hit.page_title or page_of(hit.source))
        nearest = list(pages.items())[: settings.nearest_pages]
        text = settings.answer
        if nearest:
            text += "\n\nThe nearest pages:\n" + "\n".join(f"- [{title}]({url})" for url, title in nearest)
        prepared.timings_ms["generate"] = 0.0
        prepared.timings_ms["total"] = _ms_since(prepared.started)
        done = DoneEvent(llm=NO_LLM, usage=Usage(), cost=0.0, sources_used=0, abstained=True)
        return [TokenEvent(text), done]

    async def events(self, prepared: Prepared) -> AsyncIterator[list[TokenEvent | FallbackEvent | DoneEvent]]:
        """The generator's events in the batches they arrive in; `done` gets the generate and total timings."""
        if prepared.out_of_scope:
            yield self.abstention(prepared)
            return
        started = time.perf_counter()
        # Not made current: a context attached across an async generator's yields cannot be detached cleanly.
        span = tracer().start_span("docent.generate", attributes=_generate_attributes(prepared))
        try:
            async for batch in self.generator.batches(prepared.question, prepared.hits, prepared.route.llm):
                for event in batch:
                    if isinstance(event, DoneEvent):
                        prepared.timings_ms["generate"] = _ms_since(started)
                        prepared.timings_ms["total"] = _ms_since(prepared.started)
                        span.set_attribute("docent.answered_by", event.llm)
                yield batch
        finally:
            span.end()

    async def answer(self, request: QueryRequest, condensed: Condensed | None = None, conversation_id: str = "") -> Answer:
        prepared = await self.prepare(request, condensed, conversation_id)
        if prepared.out_of_scope:
            token, done = self.abstention(prepared)
            return answer_of(prepared, token.text, [], done)
        started = time.perf_counter()
        # Not streamed: the generator returns every event in one message.
        with tracer().start_as_current_span("docent.generate", attributes=_generate_attributes(prepared)) as span:
            events = await self.generator.generate_all(prepared.question, prepared.hits, prepared.route.llm)
            span.set_attribute("docent.answered_by", next(e.llm for e in events if isinstance(e, DoneEvent)))
        prepared.timings_ms["generate"] = _ms_since(started)
        prepared.timings_ms["total"] = _ms_since(prepared.started)
        parts = [e.text for e in events if isinstance(e, TokenEvent)]
        fallbacks = [Fallback(llm=e.llm, reason=e.reason) for e in events if isinstance(e, FallbackEvent)]
        done = next(e for e in events if isinstance(e, DoneEvent))
        return answer_of(prepared, "".join(parts), fallbacks, done)

    async def ready(self) -> dict[str, str]:
        """Every stage's problems, keyed by what is wrong; empty when the pipeline can answer."""
        stages = {"retriever": self.retriever, "reranker": self.reranker, "router": self.router, "generator": self.generator}
        timeout = self.settings.serving.readiness_timeout_s
        outcomes = await asyncio.gather(
            *(asyncio.wait_for(stage.ready(), timeout) for stage in stages.values()), return_exceptions=True
        )
        problems: dict[str, str] = {}
        for name, outcome in zip(stages, outcomes):
            if isinstance(outcome, BaseException):
                problems[name] = f"not responding: {type(outcome).__name__} {outcome}".strip()
            else:
                problems.update(outcome)
        return problems


def interleaved(first: list[SearchHit], second: list[SearchHit], per_page: int) -> list[SearchHit]:
    """The hits of both rankings taken in turn (first's first), as many as `first` holds: each
    chunk once, and at most `per_page` of one page (0: no limit) as each ranking was kept."""
    tail = (*first[len(second):], *second[len(first):])  # the longer ranking's tail, when one is shorter
    hits: dict[int, SearchHit] = {}
    for hit in (*(hit for pair in zip(first, second) for hit in pair), *tail):
        hits.setdefault(hit.chunk_id, hit)
    in_turn = [(chunk_id, 0.0) for chunk_id in hits]
    kept = limit_per_page(in_turn, lambda chunk_id: page_of(hits[chunk_id].source), per_page, len(first))
    return [hits[chunk_id].model_copy(update={"rank": rank}) for rank, (chunk_id, _) in enumerate(kept, start=1)]


def searched(request: QueryRequest, condensed: Condensed | None) -> QueryRequest:
    """The request as the pipeline (and the cache) sees it: the standalone question, no conversation."""
    query = condensed.standalone if condensed else request.query
    return request.model_copy(update={"query": query, "conversation_id": None, "history": []})


def answer_of(prepared: Prepared, text: str, fallbacks: list[Fallback], done: DoneEvent) -> Answer:
    """The answer; its usage and cost include condensing the question, when an LLM did."""
    usage = done.usage if isinstance(done.usage, Usage) else Usage.model_validate(done.usage)
    cost = done.cost
    if prepared.condensed is not None:
        spent = prepared.condensed.usage
        usage = Usage(
            prompt_tokens=usage.prompt_tokens + spent.prompt_tokens,
            completion_tokens=usage.completion_tokens + spent.completion_tokens,
        )
        cost += prepared.condensed.cost
    return Answer(
        answer_id=prepared.answer_id,
        question=prepared.asked,
        index=prepared.index,
        answer=text,
        sources=prepared.sources(done.snippets),
        llm=done.llm,
        route=prepared.route,
        usage=usage,
        cost=cost,
        fallbacks=fallbacks,
        timings_ms=prepared.timings_ms,
        abstained=done.abstained,
        citations=done.citations,
        conversation_id=prepared.conversation_id,
        standalone_question=prepared.question,
    )
