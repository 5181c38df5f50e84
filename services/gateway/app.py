"""The HTTP API: `POST /query`, SSE `/stream`, `POST /feedback`, health, readiness and metrics.

The app knows a `QueryPipeline` (on `app.state.pipeline`) and the `GatewayPolicies`
around it (keys, limits, cache, answer log); whether the pipeline's stages are Serve
deployments or local objects is decided by whoever builds it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from http import HTTPStatus
from importlib.metadata import version
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.sse import EventSourceResponse, format_sse_event
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from docent.errors import DocentError
from docent.observability import RequestIds
from docent.types import (
    Answer,
    FeedbackReceipt,
    FeedbackRequest,
    Fusion,
    QueryOptions,
    QueryRequest,
    RetrievalMode,
    Strategy,
)
from services.gateway import api_docs, openai_chat, widget
from services.gateway.asking import Answered, Failed, Happening, Opened, classify
from services.gateway.dependencies import Asker, Rater, asking, policies_of
from services.gateway.metrics import GatewayMetrics
from services.gateway.pipeline import QueryPipeline, RequestError
from services.gateway.policies import Caller, GatewayPolicies
from services.generator.generator import FallbackEvent, TokenEvent

log = logging.getLogger(__name__)

CLIENT_CLOSED_REQUEST = 499  # the client hung up before the answer (nginx's code): counted, not an error

DESCRIPTION = """Answers questions about the indexed documentation with cited sources.

`POST /query` returns the whole answer; `/stream` sends it as server-sent events:
`sources` first, then `token` events (and a `fallback` event when an LLM fails and the
next one takes over), then `done` with the answer_id, the LLM that answered, token
usage, cost and timings, whether the answer abstained, its checked `citations`, and
which sources it cited with the snippet used — or `error` if the answer fails midway.

A question the documentation doesn't cover gets `abstained: true`: the answer says so and
lists the nearest pages, without calling an LLM (`llm: "none"`). Each cited claim is
checked against the sources it cites (`citations[].supported`). `POST /feedback` rates
an answer by its `answer_id`.

With auth enabled, `/query`, `/stream` and `/feedback` need `Authorization: Bearer KEY`
(401 without a known key, 403 for a revoked one or one without the scope); each key is
rate-limited (429 with Retry-After). Repeated questions may be answered from the cache
(`cached: true`, header `X-Cache: hit`).
"""


def create_app(
    pipeline: QueryPipeline | None = None,
    metrics: GatewayMetrics | None = None,
    policies: GatewayPolicies | None = None,
) -> FastAPI:
    """The app; without `policies`, they are built from the pipeline's settings."""
    # /docs and /redoc come from api_docs: their files served here, not from a CDN.
    app = FastAPI(title="docent", description=DESCRIPTION, version=version("docent"), docs_url=None, redoc_url=None)
    app.state.pipeline = pipeline
    app.state.metrics = metrics or GatewayMetrics()
    if policies is None and pipeline is not None:
        policies = GatewayPolicies(pipeline.settings, app.state.metrics)
    app.state.policies = policies
    _add_error_handlers(app)
    _add_routes(app)
    app.include_router(openai_chat.router)  # any OpenAI client or chat front end can ask
    app.include_router(api_docs.router)
    app.include_router(widget.router)  # `/` and `/widget.js`: people ask in the browser
    app.add_middleware(RequestMetrics, metrics=app.state.metrics)
    if pipeline is not None and pipeline.settings.gateway.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=pipeline.settings.gateway.cors_origins, allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"], expose_headers=["X-Request-ID", "X-Cache", "Retry-After"],
        )
    app.add_middleware(RequestIds)  # outermost: the id exists before anything else runs
    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DocentError)
    async def docent_error(request: Request, exc: DocentError) -> JSONResponse:
        return error_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        """422 naming each field at fault; the offending input is not echoed (it may be NaN, a lone
        surrogate or megabytes: nothing JSON can carry back safely)."""
        errors = [
            {"loc": [_printable(part) for part in e["loc"]], "msg": _printable(e["msg"]), "type": e["type"]}
            for e in exc.errors()
        ]
        if openai_chat.speaks_openai(request):
            param = ".".join(str(part) for part in errors[0]["loc"] if part != "body")
            body = openai_chat.error_body(HTTPStatus.UNPROCESSABLE_ENTITY, f"{param}: {errors[0]['msg']}", param)
            return JSONResponse(body, status_code=HTTPStatus.UNPROCESSABLE_ENTITY)
        return JSONResponse({"detail": errors}, status_code=HTTPStatus.UNPROCESSABLE_ENTITY)


def _printable(part: Any) -> Any:
    """A location or message part that encodes as UTF-8 (a JSON key may hold a lone surrogate)."""
    return part.encode("utf-8", "backslashreplace").decode("utf-8") if isinstance(part, str) else part


def error_response(request: Request, exc: DocentError) -> JSONResponse:
    """A DocentError as HTTP: its status and message; a request field's fault in FastAPI's 422 shape
    (OpenAI's error shape under /v1)."""
    headers = dict(getattr(exc, "headers", {}))
    if exc.retryable:
        headers["Retry-After"] = str(getattr(exc, "retry_after", None) or _retry_after(request))
    if openai_chat.speaks_openai(request):
        body = openai_chat.error_body(exc.http_status, exc.message, exc.field)
        return JSONResponse(body, status_code=exc.http_status, headers=headers or None)
    if exc.field and exc.http_status == HTTPStatus.UNPROCESSABLE_ENTITY:
        where = ["body", *exc.field.split(".")] if request.method == "POST" else ["query", exc.field.split(".")[-1]]
        return JSONResponse({"detail": [{"loc": where, "msg": str(exc), "type": "value_error"}]}, status_code=422)
    return JSONResponse({"detail": exc.message}, status_code=exc.http_status, headers=headers or None)


def _retry_after(request: Request) -> int:
    pipeline = request.app.state.pipeline
    return pipeline.settings.serving.retry_after_s if pipeline is not None else 1


class RequestMetrics:
    """Counts and times every request to the end of its body (streams included), by route."""

    def __init__(self, app, metrics: GatewayMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), [0]  # 0 until the response starts

        async def send_with_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        except asyncio.CancelledError:
            # Serve cancels a request whose client hung up: not the service's failure.
            status[0] = status[0] or CLIENT_CLOSED_REQUEST
            raise
        finally:
            code = status[0] or HTTPStatus.INTERNAL_SERVER_ERROR
            endpoint = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(endpoint, str(code)).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
            if code >= HTTPStatus.BAD_REQUEST and code != CLIENT_CLOSED_REQUEST:
                self.metrics.errors.labels(endpoint, str(code)).inc()


def _add_routes(app: FastAPI) -> None:
    metrics: GatewayMetrics = app.state.metrics

    @app.post("/query", response_model=Answer, summary="Answer a question", responses=_ERRORS)
    async def query(body: QueryRequest, request: Request, caller: Asker) -> Response:
        answer = await asking(request, caller).answer(body)
        # Already a validated Answer: serialised once, not validated again as response_model would.
        headers = {"X-Cache": "hit" if answer.cached else "miss"}
        return Response(answer.model_dump_json(), media_type="application/json", headers=headers)

    @app.post("/stream", summary="Answer a question as server-sent events", responses=_STREAM_RESPONSES)
    async def stream_post(body: QueryRequest, request: Request, caller: Asker):
        return await _stream(request, body, caller)

    @app.get("/stream", summary="Answer a question as server-sent events", responses=_STREAM_RESPONSES)
    async def stream_get(
        request: Request,
        caller: Asker,
        query: Annotated[str, Query(description="the question")],
        index: str | None = None,
        mode: RetrievalMode | None = None,
        num_chunks: Annotated[int | None, Query(ge=1)] = None,
        lexical_k: Annotated[int | None, Query(ge=0)] = None,
        fusion: Fusion | None = None,
        strategy: Strategy | None = None,
        rerank: bool | None = None,
        llm: str | None = None,
        abstain: bool | None = None,
        conversation_id: Annotated[str | None, Query(min_length=1, description="continue this conversation")] = None,
    ):
        options = {k: v for k, v in {
            "mode": mode, "num_chunks": num_chunks, "lexical_k": lexical_k, "fusion": fusion, "strategy": strategy,
            "rerank": rerank, "llm": llm, "abstain": abstain,
        }.items() if v is not None}
        try:
            body = QueryRequest(
                query=query, index=index, options=QueryOptions(**options), conversation_id=conversation_id
            )
        except ValidationError as exc:
            raise RequestValidationError(
                [{**e, "loc": ("query", *[p for p in e["loc"] if p != "options"])} for e in exc.errors(include_url=False)]
            ) from None
        return await _stream(request, body, caller)

    @app.post(
        "/feedback", status_code=201, summary="Rate an answer", response_model=FeedbackReceipt,
        responses={404: {"description": "unknown answer_id"}, 422: _ERRORS[422]},
    )
    async def feedback(body: FeedbackRequest, request: Request, caller: Rater) -> FeedbackReceipt:
        policies = policies_of(request)
        limit = policies.settings.gateway.max_comment_chars
        if body.comment is not None and len(body.comment) > limit:
            raise RequestError("comment", f"the comment is {len(body.comment)} characters; at most {limit}")
        try:
            feedback_id = await policies.answers.add_feedback(
                body.answer_id, body.rating, body.comment, caller.key_name, caller.identity
            )
        except Exception as exc:  # noqa: BLE001
            raise classify(exc, policies.settings.serving.retry_after_s) from None
        metrics.feedback.labels(body.rating).inc()
        return FeedbackReceipt(feedback_id=feedback_id, answer_id=body.answer_id)

    @app.get("/healthz", summary="The gateway process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Database, index and models are loaded", responses={503: {"description": "not ready"}})
    async def readyz(request: Request) -> JSONResponse:
        """Ready when the pipeline can answer; `degraded` lists what it answers without (Redis, failing open)."""
        pipeline, policies = request.app.state.pipeline, request.app.state.policies
        problems = await pipeline.ready() if pipeline else {"gateway": "starting"}
        degraded: dict[str, str] = {}
        if policies is not None:
            policy_problems, degraded = await policies.readiness()
            problems.update(policy_problems)
        if problems:
            retry = str(pipeline.settings.serving.retry_after_s) if pipeline else "1"
            body = {"ready": False, "problems": problems, "degraded": degraded}
            return JSONResponse(body, status_code=503, headers={"Retry-After": retry})
        return JSONResponse({"ready": True, "problems": {}, "degraded": degraded})

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


async def _stream(request: Request, body: QueryRequest, caller: Caller) -> EventSourceResponse:
    """Everything that can fail before the first byte is an HTTP error; later failures are `error` events."""
    streamed = await asking(request, caller).stream(body)
    headers = {"Cache-Control": "no-cache", "X-Cache": "hit" if streamed.cached else "miss"}
    return EventSourceResponse(_sse_events(streamed.happenings), headers=headers)


def sse(event: str, data: Any) -> bytes:
    return format_sse_event(event=event, data_str=json.dumps(data, separators=(",", ":")))


_DONE_FIELDS = {
    "answer_id", "llm", "route", "usage", "cost", "fallbacks", "timings_ms", "cached", "abstained", "citations",
    "conversation_id", "standalone_question",
}


def _done_event(answer: Answer) -> bytes:
    """`done`: the answer's metadata, its checked citations, and which sources it cited (with the snippet used)."""
    cited = [{"number": s.number, "cited": s.cited, "snippet": s.snippet} for s in answer.sources]
    return sse("done", {**answer.model_dump(include=_DONE_FIELDS), "sources": cited})


def _sources_event(opened: Opened) -> bytes:
    return sse("sources", {
        "answer_id": opened.answer_id,
        "question": opened.question,
        "standalone_question": opened.standalone_question,
        "conversation_id": opened.conversation_id,
        "index": opened.index,
        "route": opened.route.model_dump(),
        # Which sources the answer cites is known at its end: `done` says it, not this event.
        "sources": [s.model_dump(exclude={"cited", "snippet"}) for s in opened.sources],
    })


async def _sse_events(happenings: AsyncIterator[list[Happening]]) -> AsyncIterator[bytes]:
    async for batch in happenings:
        frames = []  # a batch goes out as one write: each write is a message through the Serve proxy
        for happening in batch:
            if isinstance(happening, Opened):
                frames.append(_sources_event(happening))
            elif isinstance(happening, TokenEvent):
                frames.append(sse("token", {"text": happening.text}))
            elif isinstance(happening, FallbackEvent):
                frames.append(sse("fallback", {"llm": happening.llm, "reason": happening.reason}))
            elif isinstance(happening, Answered):
                frames.append(_done_event(happening.answer))
            elif isinstance(happening, Failed):
                frames.append(sse("error", {"status": happening.error.http_status, "message": str(happening.error)}))
        yield b"".join(frames)
