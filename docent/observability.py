"""Request ids and structured logs, the same in every service.

Behind Ray Serve, the proxy gives each HTTP request an id (the client's `X-Request-ID`, or
a new one), returns it as `X-Request-ID`, and carries it in the request context of every
deployment call the request makes; with `logging_config: {encoding: JSON}` in
`services/gateway/serve.yaml` each replica's log lines are JSON objects carrying that `request_id`.
`RequestIds` does the same for the gateway when it runs without Serve (in-process, tests),
and `current_request_id` lets the pipeline name its answer after the request.
`send_logs_to_serve` routes docent's own loggers into those replica logs.

Tracing: the pipeline opens a span per stage through OpenTelemetry's API, which costs
nothing until `configure_tracing` installs an exporter (`serving.otlp_traces_endpoint`).
"""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import re
import threading
import time
import uuid
from contextvars import ContextVar

REQUEST_ID_HEADER = "x-request-id"
# Latencies of every service's metrics, in seconds: ~1 ms (a cached embedding) to a minute (a long LLM answer).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
DOCENT_LOGGERS = ("docent", "services", "ingest", "evaluation")
_SERVE_LOGGER = "ray.serve"
_USABLE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # a client's id is echoed into headers and logs: keep it tame

TRACER_NAME = "docent"
SERVICE_NAME = "docent"

_request_id: ContextVar[str | None] = ContextVar("docent_request_id", default=None)


def new_request_id() -> str:
    return uuid.uuid4().hex


def current_request_id() -> str | None:
    """The id of the request being served: Serve's request context, else the one `RequestIds` set."""
    return _serve_request_id() or _request_id.get()


def _serve_request_id() -> str | None:
    try:
        from ray.serve.context import _get_serve_request_context  # Serve's own; no public accessor yet
    except ImportError:
        return None
    return _get_serve_request_context().request_id or None


class RequestIds:
    """ASGI middleware for the gateway without Serve in front: every request gets an id (a usable
    client one is kept) that the pipeline reads and the response echoes as `X-Request-ID`.

    Behind Serve the proxy has already done all of this, so the request passes untouched.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or _serve_request_id():
            return await self.app(scope, receive, send)
        given = _header(scope, REQUEST_ID_HEADER)
        request_id = given if given and _USABLE_ID.fullmatch(given) else new_request_id()
        token = _request_id.set(request_id)

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _request_id.reset(token)


def _header(scope, name: str) -> str | None:
    wanted = name.encode()
    for key, value in scope.get("headers", []):
        if key.lower() == wanted:
            return value.decode("latin-1")
    return None


def send_logs_to_serve(flush_every_s: float, level: int = logging.INFO) -> None:
    """In a Serve replica: docent's loggers write through Serve's handlers (JSON lines with the request id).

    Serve buffers a replica's log lines (`serving.log_buffer_records`) and writes them when the
    buffer fills: a replica that stops would take up to that many lines with it. They are
    written every `flush_every_s` too, and when the process exits.
    """
    from ray.serve.context import _get_internal_replica_context  # Serve's own; no public accessor yet

    if _get_internal_replica_context() is None:
        return  # not in a replica: logging stays as configured
    serve_logger = logging.getLogger(_SERVE_LOGGER)
    for name in DOCENT_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = list(serve_logger.handlers)
        logger.setLevel(level)
        logger.propagate = False
    _flush_logs_every(flush_every_s)


_flusher: threading.Thread | None = None


def flush_serve_logs() -> None:
    """Write what Serve's handlers of this process hold (replica, proxy and controller loggers alike)."""
    for logger in (logging.getLogger(_SERVE_LOGGER), *(logging.getLogger(name) for name in DOCENT_LOGGERS)):
        for handler in logger.handlers:
            if isinstance(handler, logging.handlers.MemoryHandler):
                handler.flush()


def _flush_logs_every(interval_s: float) -> None:
    """One daemon thread per process flushes the buffered log lines; the exit flushes the rest."""
    global _flusher
    if _flusher is not None:
        return

    def flush_forever() -> None:
        while True:
            time.sleep(interval_s)
            flush_serve_logs()

    _flusher = threading.Thread(target=flush_forever, name="docent-log-flush", daemon=True)
    _flusher.start()
    atexit.register(flush_serve_logs)


def add(counter, amount: float, tags: dict[str, str] | None = None) -> None:
    """`counter.inc(amount)` for a Ray metrics counter, which refuses zero (a cached batch, a free answer)."""
    if amount > 0:
        counter.inc(amount, tags=tags)


def tracer():
    from opentelemetry import trace

    return trace.get_tracer(TRACER_NAME)


def configure_tracing(endpoint: str | None, exporter=None) -> bool:
    """Send spans to an OTLP/HTTP endpoint (or to `exporter`); False when neither is given (spans are no-ops)."""
    if endpoint is None and exporter is None:
        return False
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE_NAME}))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    trace.set_tracer_provider(provider)
    return True
