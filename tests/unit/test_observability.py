"""Request ids without Serve in front: kept when usable, made when missing, echoed, readable by the app."""

from __future__ import annotations

import logging
import logging.handlers

import httpx
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from docent.observability import DOCENT_LOGGERS, RequestIds, current_request_id, send_logs_to_serve


async def whoami(request):
    return JSONResponse({"id": current_request_id()})


async def _ask(headers: dict[str, str] | None = None) -> httpx.Response:
    app = RequestIds(Starlette(routes=[Route("/", whoami)]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        return await client.get("/", headers=headers)


async def test_a_usable_client_id_is_kept_and_echoed():
    response = await _ask({"X-Request-ID": "client-42.a:b"})
    assert response.json() == {"id": "client-42.a:b"} and response.headers["x-request-id"] == "client-42.a:b"


async def test_a_missing_or_unusable_id_is_replaced_by_a_new_one():
    made, replaced = await _ask(), await _ask({"X-Request-ID": "spaces and\nnewlines"})
    for response in (made, replaced):
        request_id = response.headers["x-request-id"]
        assert response.json() == {"id": request_id} and len(request_id) == 32
    assert made.headers["x-request-id"] != replaced.headers["x-request-id"]
    assert current_request_id() is None  # nothing leaks out of the request


def test_outside_a_replica_logging_is_left_alone():
    before = {name: (logging.getLogger(name).handlers[:], logging.getLogger(name).propagate) for name in DOCENT_LOGGERS}
    send_logs_to_serve(1.0)
    assert before == {name: (logging.getLogger(name).handlers[:], logging.getLogger(name).propagate) for name in DOCENT_LOGGERS}


def test_buffered_serve_log_lines_are_written_by_a_flush(tmp_path):
    from docent.observability import flush_serve_logs

    target = logging.FileHandler(tmp_path / "replica.log")
    buffered = logging.handlers.MemoryHandler(capacity=1000, target=target, flushLevel=logging.ERROR)
    serve_logger = logging.getLogger("ray.serve")
    serve_logger.addHandler(buffered)
    try:
        serve_logger.warning("answered answer_id=abc")
        assert (tmp_path / "replica.log").read_text() == ""  # held in the buffer, as Serve holds it
        flush_serve_logs()
        assert "answered answer_id=abc" in (tmp_path / "replica.log").read_text()
    finally:
        serve_logger.removeHandler(buffered)
        target.close()
