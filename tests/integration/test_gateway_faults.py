"""Gateway faults without Serve: the same FastAPI app over an in-process pipeline (real database)."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest

from docent.settings import Settings
from services.gateway.app import create_app
from services.gateway.local import close_local_pipeline, open_local_pipeline

pytestmark = pytest.mark.integration


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


async def test_an_unreachable_database_is_503_with_retry_after_and_readyz_says_why():
    settings = Settings(database_url=f"postgresql://docent@127.0.0.1:{_closed_port()}/docent", index="any", auth_enabled=False)
    pipeline = await open_local_pipeline(settings)  # the index's load fails: no database
    try:
        app = create_app(pipeline)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as http:
            response = await http.post("/query", json={"query": "what is Ray?"})
            assert response.status_code == 503, response.text
            assert "PostgreSQL" in response.json()["detail"] and response.headers["Retry-After"] == "5"
            stream = await http.post("/stream", json={"query": "what is Ray?"})
            assert stream.status_code == 503
            ready = await http.get("/readyz")
            assert ready.status_code == 503 and "database" in ready.json()["problems"]
            assert (await http.get("/healthz")).status_code == 200
    finally:
        await close_local_pipeline(pipeline)


def test_an_index_still_loading_is_503_until_it_is_ready(ray_local, docs_tree):
    from ingest.pipeline import run_ingest

    settings = Settings(
        index="loading-check", chunking={"chunk_size": 200, "chunk_overlap": 20}, serving={"index_preload": False},
        auth_enabled=False,
    )
    run_ingest(docs_tree, settings)
    asyncio.run(_first_503_then_answers(settings))


async def _first_503_then_answers(settings: Settings) -> None:
    pipeline = await open_local_pipeline(settings)
    try:
        app = create_app(pipeline)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as http:
            first = await http.post("/query", json={"query": "how are jobs retried?"})
            assert first.status_code == 503 and "loading" in first.json()["detail"] and first.headers["Retry-After"]
            await pipeline.retriever.loading["loading-check"]
            later = await http.post("/query", json={"query": "how are jobs retried?"})
            assert later.status_code == 200, later.text
            assert later.json()["sources"]
    finally:
        await close_local_pipeline(pipeline)


async def test_redis_down_with_failure_closed_refuses_with_503_and_readyz_says_why():
    settings = Settings(
        index="any", auth_enabled=False, redis_url=f"redis://127.0.0.1:{_closed_port()}/0",
        gateway={"redis_failure": "closed"},
    )
    pipeline = await open_local_pipeline(settings, wait_ready=False)
    try:
        app = create_app(pipeline)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as http:
            response = await http.post("/query", json={"query": "what is Ray?"})
            assert response.status_code == 503 and "Redis" in response.json()["detail"], response.text
            assert response.headers["Retry-After"]
            ready = await http.get("/readyz")
            assert ready.status_code == 503 and "redis" in ready.json()["problems"]
    finally:
        await app.state.policies.aclose()
        await close_local_pipeline(pipeline)


async def test_redis_back_after_an_outage_is_used_at_once_without_stale_connections_failing():
    """With `redis_failure: closed` every Redis failure is a 503: connections pooled before the outage
    must not fail one by one once Redis is back."""
    from services.gateway.guarded_redis import GuardedRedis, RedisDown
    from tests.gateway_fixtures import start_redis

    server = start_redis()
    settings = Settings(gateway={"redis_failure": "closed", "redis_retry_s": 0.2})
    redis = GuardedRedis(server.url, settings.gateway)
    concurrent = 20
    try:
        await asyncio.gather(*(redis.call(lambda r: r.ping()) for _ in range(concurrent)))  # a pool of connections
        server.stop()
        with pytest.raises(RedisDown):
            await redis.call(lambda r: r.ping())
        server = start_redis(server.port)
        await asyncio.sleep(settings.gateway.redis_retry_s)
        outcomes = []
        for _ in range(3):
            outcomes += await asyncio.gather(*(redis.call(lambda r: r.ping()) for _ in range(concurrent)), return_exceptions=True)
        failed = [repr(o) for o in outcomes if isinstance(o, BaseException)]
        assert not failed, f"{len(failed)} of {len(outcomes)} calls failed after Redis was back: {failed[:2]}"
        assert redis.problem is None
    finally:
        await redis.aclose()
        server.stop()
