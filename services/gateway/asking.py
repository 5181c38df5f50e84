"""One question through the gateway: its conversation, the cache, the pipeline and the answer log.

`/query`, `/stream` and `/v1/chat/completions` differ only in how they write what
happens; `Asking` is what they share. A follow-up is made to stand alone first, and the
cache is looked up by that standalone question: "how do I kill it?" after two different
questions is two different questions.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from http import HTTPStatus

from docent.errors import DocentError
from docent.types import Answer, Fallback, QueryRequest, Route, Source, Turn, Usage
from services.gateway.conversation import OFFLINE, Condensed
from services.gateway.errors import ServiceError
from services.gateway.metrics import GatewayMetrics
from services.gateway.pipeline import Prepared, QueryPipeline, answer_of, searched
from services.gateway.policies import CacheLookup, Caller, GatewayPolicies
from services.generator.generator import DoneEvent, FallbackEvent, TokenEvent

log = logging.getLogger(__name__)


# Ray's errors, by name (Ray need not be importable where the gateway's logic runs).
_OVERLOADED = ("BackPressureError", "DeploymentUnavailableError")
_REPLICA_LOST = ("ActorUnavailableError", "ActorDiedError", "RayActorError", "WorkerCrashedError")


def classify(exc: BaseException, retry_after: int) -> DocentError:
    """The client-facing form of a pipeline failure (Ray wraps remote errors; their cause decides).

    A DocentError says its own status; Serve's overload errors and a replica that died or is being
    replaced are 503s (Serve starts another); anything else is a bug (500).
    """
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        exc = cause
    if isinstance(exc, DocentError):
        if exc.http_status >= HTTPStatus.INTERNAL_SERVER_ERROR and not exc.retryable:
            log.error("%s: %s", type(exc).__name__, exc)  # the operator's to fix: it goes to the log too
        return exc
    if type(exc).__name__ in _OVERLOADED:
        return ServiceError(503, "the service is overloaded; try again shortly", retry_after)
    if type(exc).__name__ in _REPLICA_LOST:
        return ServiceError(503, "a part of the service is restarting; try again shortly", retry_after)
    log.exception("unexpected failure", exc_info=exc)
    return ServiceError(500, f"internal error ({type(exc).__name__}); the gateway's log has the details")


@dataclass
class Opened:
    """A stream's first news: the sources found, before any of the answer."""

    answer_id: str
    question: str
    standalone_question: str
    conversation_id: str
    index: str
    route: Route
    sources: list[Source]

    @classmethod
    def of_answer(cls, answer: Answer) -> Opened:
        return cls(
            answer.answer_id, answer.question, answer.standalone_question, answer.conversation_id, answer.index,
            answer.route, answer.sources,
        )

    @classmethod
    def of_prepared(cls, prepared: Prepared) -> Opened:
        return cls(
            prepared.answer_id, prepared.asked, prepared.question, prepared.conversation_id, prepared.index,
            prepared.route, prepared.sources(),
        )


@dataclass
class Answered:
    """A stream's last news: the whole answer, logged (feedback may name it from now on)."""

    answer: Answer


@dataclass
class Failed:
    """The answer failed after the stream began."""

    error: DocentError


Happening = Opened | TokenEvent | FallbackEvent | Answered | Failed


@dataclass
class Streamed:
    cached: bool
    happenings: AsyncIterator[list[Happening]]  # in the batches they arrive in: one write each


class Asking:
    """A caller's question answered with the gateway's pipeline and policies."""

    def __init__(self, pipeline: QueryPipeline, policies: GatewayPolicies, metrics: GatewayMetrics, caller: Caller):
        self.pipeline, self.policies, self.metrics, self.caller = pipeline, policies, metrics, caller
        self.retry_after = pipeline.settings.serving.retry_after_s
        self.timeout_s = pipeline.settings.serving.request_timeout_s

    async def answer(self, body: QueryRequest) -> Answer:
        started = time.perf_counter()
        deadline = asyncio.timeout(self.timeout_s)
        try:
            async with deadline:
                condensed = await self._condensed(body)
                lookup = await self.policies.cached(searched(body, condensed))
                if lookup and lookup.answer:
                    answer = self._replayed(lookup.answer, body, condensed, started)
                else:
                    answer = await self.pipeline.answer(body, condensed)
                    await self.policies.remember(lookup, answer)
        except Exception as exc:  # noqa: BLE001 - every failure becomes an HTTP error with a message
            raise self._failure(exc, deadline.expired()) from None
        await self._answered(answer, condensed)
        return answer

    async def stream(self, body: QueryRequest) -> Streamed:
        """Everything that can fail before the first event raises (an HTTP error); later failures are `Failed`."""
        started = time.perf_counter()
        deadline = asyncio.timeout(self.timeout_s)
        try:
            async with deadline:
                condensed = await self._condensed(body)
                lookup = await self.policies.cached(searched(body, condensed))
                if lookup and lookup.answer:
                    return Streamed(True, self._replay(self._replayed(lookup.answer, body, condensed, started), condensed))
                prepared = await self.pipeline.prepare(body, condensed)
        except Exception as exc:  # noqa: BLE001
            raise self._failure(exc, deadline.expired()) from None
        return Streamed(False, self._generate(prepared, lookup, condensed, deadline.when()))

    def _failure(self, exc: BaseException, expired: bool) -> DocentError:
        """A failure as the client sees it; a request past its deadline (a replica waited for, most often) is a 503."""
        return self._too_late() if expired and isinstance(exc, TimeoutError) else classify(exc, self.retry_after)

    def _too_late(self) -> ServiceError:
        return ServiceError(
            HTTPStatus.SERVICE_UNAVAILABLE,
            f"no answer within serving.request_timeout_s ({self.timeout_s:g} s): a part of the service may be "
            "restarting; try again shortly",
            self.retry_after,
        )

    async def _condensed(self, body: QueryRequest) -> Condensed:
        """The question as it will be searched for, read with its conversation's earlier turns."""
        turns: list[Turn] = body.history
        if body.conversation_id is not None:
            max_turns = self.pipeline.settings.conversation.max_turns
            turns = await self.policies.answers.turns(body.conversation_id, self.caller.key_name, max_turns)
        condensed = await self.pipeline.condense(body, turns)
        if condensed.by:
            llm = None if condensed.by == OFFLINE else condensed.by
            self.metrics.record_condensed(llm, condensed.usage, condensed.cost, condensed.ms)
        return condensed

    @staticmethod
    def _replayed(cached: Answer, body: QueryRequest, condensed: Condensed, started: float) -> Answer:
        """A cached answer given again, in this question's words and conversation."""
        answer = GatewayPolicies.replay(cached, started)
        conversation_id = body.conversation_id or uuid.uuid4().hex
        return answer.model_copy(update={
            "question": condensed.question, "standalone_question": condensed.standalone, "conversation_id": conversation_id,
        })

    async def _replay(self, answer: Answer, condensed: Condensed) -> AsyncIterator[list[Happening]]:
        """A cached answer as a stream: its whole text in one token event."""
        await self._answered(answer, condensed)
        yield [Opened.of_answer(answer)]
        yield [TokenEvent(answer.answer), Answered(answer)]

    async def _generate(
        self, prepared: Prepared, lookup: CacheLookup | None, condensed: Condensed, deadline: float | None
    ) -> AsyncIterator[list[Happening]]:
        """The stream after its sources; its first words must come by `deadline` (the loop's clock)."""
        yield [Opened.of_prepared(prepared)]
        parts: list[str] = []
        fallbacks: list[Fallback] = []
        try:
            async for batch in _first_by(self.pipeline.events(prepared), deadline):
                happenings: list[Happening] = []
                for event in batch:
                    if isinstance(event, TokenEvent):
                        parts.append(event.text)
                    elif isinstance(event, FallbackEvent):
                        fallbacks.append(Fallback(llm=event.llm, reason=event.reason))
                    elif isinstance(event, DoneEvent):
                        answer = answer_of(prepared, "".join(parts), fallbacks, event)
                        # Logged before the client hears of it: feedback may name the answer_id at once.
                        await self._answered(answer, condensed)
                        await self.policies.remember(lookup, answer)
                        happenings.append(Answered(answer))
                        continue
                    happenings.append(event)
                yield happenings
        except Exception as exc:  # noqa: BLE001 - the stream has begun: the client hears of it in the stream
            self.metrics.errors.labels("/stream", "midstream").inc()
            yield [Failed(self._too_late() if isinstance(exc, _FirstWordsLate) else classify(exc, self.retry_after))]

    async def _answered(self, answer: Answer, condensed: Condensed) -> None:
        if not answer.cached:
            # The condensing LLM's tokens and cost are counted under its own name (record_condensed).
            spent = condensed.usage if condensed.by else Usage()
            usage = Usage(
                prompt_tokens=answer.usage.prompt_tokens - spent.prompt_tokens,
                completion_tokens=answer.usage.completion_tokens - spent.completion_tokens,
            )
            cost = answer.cost - (condensed.cost if condensed.by else 0.0)
            timings = {stage: ms for stage, ms in answer.timings_ms.items() if stage != "condense"}
            self.metrics.record_answer(answer.llm, answer.route.llm, usage, cost, timings, answer.fallbacks)
        _log_answer(answer)
        await self.policies.record(answer, self.caller)


class _FirstWordsLate(Exception):
    """The generator said nothing before the request's deadline."""


async def _first_by(batches: AsyncIterator[list], deadline: float | None) -> AsyncIterator[list]:
    """`batches`, the first of which must arrive by `deadline` (after it, the LLM's own timeouts bound each wait)."""
    iterator = aiter(batches)
    try:
        remaining = None if deadline is None else max(0.0, deadline - asyncio.get_running_loop().time())
        try:
            first = await asyncio.wait_for(anext(iterator), remaining)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise _FirstWordsLate from None
        yield first
        async for batch in iterator:
            yield batch
    finally:
        await iterator.aclose()


def _log_answer(answer: Answer) -> None:
    log.info(
        "answered answer_id=%s llm=%s route=%s sources=%d prompt_tokens=%d completion_tokens=%d cost=%.6f total_ms=%.1f"
        " conversation_id=%s",
        answer.answer_id, answer.llm, answer.route.llm, len(answer.sources), answer.usage.prompt_tokens,
        answer.usage.completion_tokens, answer.cost, answer.timings_ms.get("total", 0.0), answer.conversation_id,
    )
