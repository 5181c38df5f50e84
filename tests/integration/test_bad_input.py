"""Bad input never gets a 5xx from the served gateway: schemathesis over every operation of
its /openapi.json (bounded), and the inputs that once did, by hand."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from docent.db import connect
from docent.settings import Settings
from services.gateway.keys import create_key
from tests.gateway_fixtures import answering_llms, serve_docent

pytestmark = pytest.mark.integration

EXAMPLES_PER_OPERATION = 25  # bounded: the suite's time, not the search's depth, sets this


@pytest.fixture(scope="module")
def gateway(ray_local, llm_server, tmp_path_factory):
    with serve_docent(
        tmp_path_factory.mktemp("bad-input"),
        auth_enabled=True,
        generation={"llms": answering_llms(llm_server.base_url)[:1]},
        conversation={"condenser": "offline"},
        gateway={"rate_limit": {"enabled": False}},  # every case reaches the request's handling
    ) as served:
        yield served


async def _new_key() -> str:
    conn = await connect(Settings())
    try:
        return await create_key(conn, f"fuzz-{uuid.uuid4().hex[:8]}", ("query", "feedback"))
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def key(gateway) -> str:
    return asyncio.run(_new_key())


def test_no_operation_answers_a_server_error(gateway, key):
    """Schemathesis's cases for each operation of the served /openapi.json; every 5xx is a failure."""
    schema = schemathesis.openapi.from_url(f"{gateway.url}/openapi.json")
    failures: dict[str, str] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = {op.label for op in operations}
    assert {"POST /query", "GET /stream", "POST /feedback", "POST /v1/chat/completions", "GET /v1/models"} <= labels
    for operation in operations:

        @given(operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case):
            response = case.call(headers={"Authorization": f"Bearer {key}"}, timeout=60)
            case.validate_response(response, checks=[not_a_server_error])

        try:
            check()
        except Exception as exc:  # noqa: BLE001 - collected: every operation is tried
            failures[operation.label] = str(exc)[:2000]
    assert not failures, failures


# --- the inputs that once gave 500s, by hand --------------------------------------------


@pytest.fixture
def http(gateway, key):
    with httpx.Client(base_url=gateway.url, timeout=60, headers={"Authorization": f"Bearer {key}"}) as client:
        yield client


def _post(http: httpx.Client, path: str, raw: str) -> httpx.Response:
    return http.post(path, content=raw.encode("utf-8", "surrogatepass"), headers={"Content-Type": "application/json"})


@pytest.mark.parametrize(("path", "raw", "field"), [
    ("/query", '{"query": "a\\u0000b"}', "query"),
    ("/query", '{"query": "ok", "index": "x\\u0000"}', "index"),
    ("/query", '{"query": "\\ud800 lonely"}', "query"),
    ("/query", '{"query": "ok", "history": [{"role": "user", "content": "\\u0000"}]}', "history"),
    ("/query", '{"query": NaN}', "query"),
    ("/query", '{"\\ud800": 1, "query": "ok"}', None),
    ("/feedback", '{"answer_id": "a\\u0000", "rating": "up"}', "answer_id"),
    ("/feedback", '{"answer_id": "a", "rating": "up", "comment": "\\u0000"}', "comment"),
    ("/v1/chat/completions", '{"model": "m", "messages": [{"role": "user", "content": "a\\u0000"}]}', "messages"),
])
def test_text_no_database_can_store_is_a_422_naming_its_field(http, path, raw, field):
    response = _post(http, path, raw)
    assert response.status_code == 422, response.text
    if field is not None:
        assert field in response.text


def test_a_lexical_k_beyond_the_limit_is_a_422_and_at_the_limit_an_answer(http):
    limit = Settings().serving.max_num_chunks
    over = http.post("/query", json={"query": "How are jobs retried?", "options": {"lexical_k": 5000}})
    assert over.status_code == 422 and "lexical_k" in over.text
    at = http.post("/query", json={"query": "How are jobs retried?", "options": {"lexical_k": limit, "llm": "extractive"}})
    assert at.status_code == 200, at.text
