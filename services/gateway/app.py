"""The HTTP API: `POST /query`, SSE `/stream`, health, readiness and metrics.

The app only knows a `QueryPipeline` (on `app.state.pipeline`); whether its stages are
Serve deployments or local objects is decided by whoever builds it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.sse import EventSourceResponse, format_sse_event
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from docent.db import DatabaseError
from docent.observability import RequestIds
from docent.store import IndexNotFound
from docent.types import Answer, Fallback, QueryOptions, QueryRequest, UnknownLLM
from services.gateway.metrics import GatewayMetrics
from services.gateway.pipeline import Prepared, QueryPipeline, RequestError, answer_of
from services.generator.generator import DoneEvent, FallbackEvent, GenerationFailed, TokenEvent
from services.generator.llm import LLMFailure
from services.retriever.lexical import LexicalIndexError

log = logging.getLogger(__name__)

DESCRIPTION = """Answers questions about the indexed documentation with cited sources.

`POST /query` returns the whole answer; `/stream` sends it as server-sent events:
`sources` first, then `token` events (and a `fallback` event when an LLM fails and the
next one takes over), then `done` with the LLM that answered, token usage, cost and
timings — or `error` if the answer fails midway.
"""


class ServiceError(Exception):
    """A failure with the HTTP status and message the client should see."""

    def __init__(self, status: int, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.status, self.message, self.retry_after = status, message, retry_after


def classify(exc: BaseException, retry_after: int) -> ServiceError | RequestError:
    """The client-facing form of a pipeline failure (Ray wraps remote errors; their cause decides).

    A RequestError stays one: its handler answers 422 naming the field.
    """
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        exc = cause
    if isinstance(exc, (ServiceError, RequestError)):
        return exc
    if isinstance(exc, UnknownLLM):
        return RequestError("options.llm", str(exc))
    if isinstance(exc, IndexNotFound):
        return ServiceError(404, str(exc))
    if isinstance(exc, (DatabaseError, LexicalIndexError)):
        return ServiceError(503, str(exc), retry_after)
    if isinstance(exc, (GenerationFailed, LLMFailure)):
        return ServiceError(502, str(exc))
    if type(exc).__name__ in ("BackPressureError", "DeploymentUnavailableError"):
        return ServiceError(503, "the service is overloaded; try again shortly", retry_after)
    log.exception("unexpected failure", exc_info=exc)
    return ServiceError(500, f"internal error ({type(exc).__name__}); the gateway's log has the details")


def create_app(pipeline: QueryPipeline | None = None, metrics: GatewayMetrics | None = None) -> FastAPI:
    app = FastAPI(title="docent", description=DESCRIPTION, version="0.1.0")
    app.state.pipeline = pipeline
    app.state.metrics = metrics or GatewayMetrics()
    _add_error_handlers(app)
    _add_routes(app)
    app.add_middleware(RequestMetrics, metrics=app.state.metrics)
    app.add_middleware(RequestIds)  # outermost: the id exists before anything else runs
    return app


def _pipeline(request: Request) -> QueryPipeline:
    pipeline = request.app.state.pipeline
    if pipeline is None:
        raise ServiceError(503, "the gateway is starting", 1)
    return pipeline


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
        return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=headers)

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError) -> JSONResponse:
        where = ["body", *exc.field.split(".")] if request.method == "POST" else ["query", exc.field.split(".")[-1]]
        return JSONResponse({"detail": [{"loc": where, "msg": str(exc), "type": "value_error"}]}, status_code=422)


class RequestMetrics:
    """Counts and times every request to the end of its body (streams included), by route."""

    def __init__(self, app, metrics: GatewayMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), [500]

        async def send_with_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", "unmatched")
            self.metrics.requests.labels(endpoint, str(status[0])).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
            if status[0] >= 400:
                self.metrics.errors.labels(endpoint, str(status[0])).inc()


def _log_answer(answer: Answer) -> None:
    log.info(
        "answered id=%s llm=%s route=%s sources=%d prompt_tokens=%d completion_tokens=%d cost=%.6f total_ms=%.1f",
        answer.answer_id, answer.llm, answer.route.llm, len(answer.sources), answer.usage.prompt_tokens,
        answer.usage.completion_tokens, answer.cost, answer.timings_ms.get("total", 0.0),
    )


def _add_routes(app: FastAPI) -> None:
    metrics: GatewayMetrics = app.state.metrics

    @app.post("/query", response_model=Answer, summary="Answer a question", responses=_ERRORS)
    async def query(body: QueryRequest, request: Request) -> Response:
        pipeline = _pipeline(request)
        try:
            answer = await pipeline.answer(body)
        except Exception as exc:  # noqa: BLE001 - every failure becomes an HTTP error with a message
            raise classify(exc, pipeline.settings.serving.retry_after_s) from None
        metrics.record_answer(answer.llm, answer.route.llm, answer.usage, answer.cost, answer.timings_ms, answer.fallbacks)
        _log_answer(answer)
        # Already a validated Answer: serialised once, not validated again as response_model would.
        return Response(answer.model_dump_json(), media_type="application/json")

    @app.post("/stream", summary="Answer a question as server-sent events", responses=_STREAM_RESPONSES)
    async def stream_post(body: QueryRequest, request: Request):
        return await _stream(_pipeline(request), body, metrics)

    @app.get("/stream", summary="Answer a question as server-sent events", responses=_STREAM_RESPONSES)
    async def stream_get(
        request: Request,
        query: Annotated[str, Query(description="the question")],
        index: str | None = None,
        mode: Literal["semantic", "lexical", "hybrid"] | None = None,
        num_chunks: Annotated[int | None, Query(ge=1)] = None,
        lexical_k: Annotated[int | None, Query(ge=0)] = None,
        fusion: Literal["reference", "rrf"] | None = None,
        strategy: Literal["chunks", "sentence-window", "parent-section"] | None = None,
        rerank: bool | None = None,
        llm: str | None = None,
    ):
        options = {k: v for k, v in dict(
            mode=mode, num_chunks=num_chunks, lexical_k=lexical_k, fusion=fusion, strategy=strategy, rerank=rerank, llm=llm
        ).items() if v is not None}
        try:
            body = QueryRequest(query=query, index=index, options=QueryOptions(**options))
        except ValidationError as exc:
            raise RequestValidationError(
                [{**e, "loc": ("query", *[p for p in e["loc"] if p != "options"])} for e in exc.errors(include_url=False)]
            ) from None
        return await _stream(_pipeline(request), body, metrics)

    @app.get("/healthz", summary="The gateway process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Database, index and models are loaded", responses={503: {"description": "not ready"}})
    async def readyz(request: Request) -> JSONResponse:
        pipeline = request.app.state.pipeline
        problems = await pipeline.ready() if pipeline else {"gateway": "starting"}
        if problems:
            retry = str(pipeline.settings.serving.retry_after_s) if pipeline else "1"
            return JSONResponse({"ready": False, "problems": problems}, status_code=503, headers={"Retry-After": retry})
        return JSONResponse({"ready": True, "problems": {}})

    @app.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    async def prometheus() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "unknown index"},
    422: {"description": "invalid request: the message names the field"},
    502: {"description": "every LLM in the fallback chain failed"},
    503: {"description": "database, index or models not ready; see Retry-After"},
}
_STREAM_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "events: sources, token…, done (or error)", "content": {"text/event-stream": {}}},
    **_ERRORS,
}


async def _stream(pipeline: QueryPipeline, body: QueryRequest, metrics: GatewayMetrics) -> EventSourceResponse:
    """Everything that can fail before the first byte is an HTTP error; later failures are `error` events."""
    try:
        prepared = await pipeline.prepare(body)
    except Exception as exc:  # noqa: BLE001
        raise classify(exc, pipeline.settings.serving.retry_after_s) from None
    return EventSourceResponse(_events(pipeline, prepared, metrics), headers={"Cache-Control": "no-cache"})


def sse(event: str, data: Any) -> bytes:
    return format_sse_event(event=event, data_str=json.dumps(data, separators=(",", ":")))


async def _events(pipeline: QueryPipeline, prepared: Prepared, metrics: GatewayMetrics) -> AsyncIterator[bytes]:
    yield sse("sources", {
        "answer_id": prepared.answer_id,
        "question": prepared.question,
        "index": prepared.index,
        "route": prepared.route.model_dump(),
        "sources": [s.model_dump() for s in prepared.sources],
    })
    parts: list[str] = []
    fallbacks: list[Fallback] = []
    try:
        async for batch in pipeline.events(prepared):
            frames = []  # a batch goes out as one write: each write is a message through the Serve proxy
            for event in batch:
                if isinstance(event, TokenEvent):
                    parts.append(event.text)
                    frames.append(sse("token", {"text": event.text}))
                elif isinstance(event, FallbackEvent):
                    fallbacks.append(Fallback(llm=event.llm, reason=event.reason))
                    frames.append(sse("fallback", {"llm": event.llm, "reason": event.reason}))
                elif isinstance(event, DoneEvent):
                    answer = answer_of(prepared, "".join(parts), fallbacks, event)
                    metrics.record_answer(answer.llm, answer.route.llm, answer.usage, answer.cost, answer.timings_ms, fallbacks)
                    _log_answer(answer)
                    done = answer.model_dump(include={"answer_id", "llm", "route", "usage", "cost", "fallbacks", "timings_ms", "cached"})
                    frames.append(sse("done", done))
            yield b"".join(frames)
    except Exception as exc:  # noqa: BLE001 - the stream has begun: the client gets an error event
        error = classify(exc, pipeline.settings.serving.retry_after_s)
        metrics.errors.labels("/stream", "midstream").inc()
        status = error.status if isinstance(error, ServiceError) else 422
        yield sse("error", {"status": status, "message": str(error)})
