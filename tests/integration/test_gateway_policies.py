"""Keys, rate limits, the response cache and feedback on the real Serve application,
with a real redis-server and the real embedded PostgreSQL (the LLM is the test server)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import httpx
import pytest

from docent.client import parse_sse
from docent.db import connect
from docent.settings import Settings
from services.gateway.keys import create_key
from tests.gateway_fixtures import answering_llms, serve_docent, start_redis

pytestmark = pytest.mark.integration

RATE_LIMIT = 20
CONCURRENT = 50
QUESTION = "How many times is a failed job retried?"


@pytest.fixture(scope="module")
def redis():
    server = start_redis()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(ray_local, llm_server, redis, tmp_path_factory):
    with serve_docent(
        tmp_path_factory.mktemp("policies"),
        auth_enabled=True,
        redis_url=redis.url,
        generation={"llms": answering_llms(llm_server.base_url)},
        gateway={"rate_limit": {"requests": RATE_LIMIT, "window_s": 60}, "redis_retry_s": 0.5},
    ) as served:
        yield served


async def _new_key(scopes=("query", "feedback")) -> tuple[str, str]:
    name = f"test-{uuid.uuid4().hex[:8]}"
    conn = await connect(Settings())
    try:
        return name, await create_key(conn, name, scopes)
    finally:
        await conn.close()


async def _sql(query: str, *args):
    conn = await connect(Settings())
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


@pytest.fixture
async def http(gateway):
    async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as client:
        yield client


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _ask(question: str = QUESTION, llm: str = "echo") -> dict:
    return {"query": question, "options": {"llm": llm}}


# --- keys ---------------------------------------------------------------------------


async def test_without_a_key_every_answering_endpoint_is_401(http):
    for method, path, body in (("POST", "/query", _ask()), ("POST", "/stream", _ask()),
                               ("POST", "/feedback", {"answer_id": "x", "rating": "up"})):
        response = await http.request(method, path, json=body)
        assert response.status_code == 401, (path, response.text)
        assert "Bearer" in response.json()["detail"] and response.headers["www-authenticate"].startswith("Bearer")
    assert (await http.get("/stream", params={"query": QUESTION})).status_code == 401
    unknown = await http.post("/query", json=_ask(), headers=_bearer("dk_00000000_not-a-real-key"))
    assert unknown.status_code == 401 and unknown.json()["detail"] == "unknown API key"
    assert (await http.get("/healthz")).status_code == 200


async def test_a_key_answers_until_it_is_revoked_then_403(http):
    name, key = await _new_key()
    assert (await http.post("/query", json=_ask(), headers=_bearer(key))).status_code == 200
    stored = await _sql("SELECT key_hash, last_used_at FROM api_keys WHERE name = $1", name)
    assert key not in stored[0]["key_hash"] and stored[0]["last_used_at"] is not None  # only a hash is kept

    conn = await connect(Settings())
    try:
        from services.gateway.keys import revoke_key

        await revoke_key(conn, name)
    finally:
        await conn.close()
    revoked = await http.post("/query", json=_ask(), headers=_bearer(key))
    assert revoked.status_code == 403 and "revoked" in revoked.json()["detail"]


async def test_a_key_without_the_scope_is_403(http):
    _, feedback_only = await _new_key(scopes=("feedback",))
    response = await http.post("/query", json=_ask(), headers=_bearer(feedback_only))
    assert response.status_code == 403 and "may not use query" in response.json()["detail"]


# --- rate limits --------------------------------------------------------------------


async def test_fifty_concurrent_requests_exactly_the_limit_pass_and_the_rest_get_429(http):
    _, key = await _new_key()
    responses = await asyncio.gather(*(
        http.post("/query", json=_ask(f"{QUESTION} ({n})", llm="extractive"), headers=_bearer(key))
        for n in range(CONCURRENT)
    ))
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == RATE_LIMIT and statuses.count(429) == CONCURRENT - RATE_LIMIT, statuses
    refused = next(r for r in responses if r.status_code == 429)
    assert 1 <= int(refused.headers["Retry-After"]) <= 60 and "rate limit" in refused.json()["detail"]
    _, other_key = await _new_key()  # limits are per key
    assert (await http.post("/query", json=_ask(), headers=_bearer(other_key))).status_code == 200


# --- cache --------------------------------------------------------------------------


async def test_a_repeated_question_is_a_cache_hit_with_the_same_answer_faster(http):
    _, key = await _new_key()
    question = f"How do I configure retries for job {uuid.uuid4().hex[:6]}?"
    first = await http.post("/query", json=_ask(question), headers=_bearer(key))
    again = await http.post("/query", json=_ask("  " + question.upper().rstrip("?") + " "), headers=_bearer(key))
    assert first.status_code == again.status_code == 200
    assert first.headers["x-cache"] == "miss" and again.headers["x-cache"] == "hit"
    miss, hit = first.json(), again.json()
    assert hit["cached"] and not miss["cached"]
    assert hit["answer"] == miss["answer"] and hit["sources"] == miss["sources"] and hit["llm"] == miss["llm"] == "echo"
    assert hit["answer_id"] != miss["answer_id"]  # each answer can be rated on its own
    assert hit["timings_ms"]["total"] < miss["timings_ms"]["total"], (hit["timings_ms"], miss["timings_ms"])

    other_options = await http.post("/query", json={**_ask(question), "options": {"llm": "extractive"}}, headers=_bearer(key))
    assert other_options.headers["x-cache"] == "miss"  # what answers is part of the key

    async with http.stream("POST", "/stream", json=_ask(question), headers=_bearer(key)) as response:
        assert response.headers["x-cache"] == "hit"
        events = list(parse_sse([line async for line in response.aiter_lines()]))
    assert [e for e, _ in events] == ["sources", "token", "done"]
    assert events[1][1]["text"] == miss["answer"] and events[2][1]["cached"] is True
    metrics = (await http.get("/metrics")).text
    assert 'docent_cache_lookups_total{result="hit"}' in metrics


async def test_ingesting_the_index_again_invalidates_its_cached_answers(http, gateway, redis):
    from ingest.pipeline import run_ingest
    from tests.gateway_fixtures import BASE_URL

    _, key = await _new_key()
    question = f"What does the changelog say about version {uuid.uuid4().hex[:4]}?"
    await http.post("/query", json=_ask(question), headers=_bearer(key))
    assert (await http.post("/query", json=_ask(question), headers=_bearer(key))).headers["x-cache"] == "hit"
    import redis as redis_client

    client = redis_client.Redis.from_url(redis.url)
    assert client.keys(f"docent:answer:{gateway.index}:*")

    changelog = gateway.docs / "guide" / "changelog.txt"
    changelog.write_text(changelog.read_text() + "\nVersion 9.9 adds exponential backoff to retries.\n")
    settings = Settings(index=gateway.index, chunking=gateway.args["chunking"], redis_url=redis.url)
    await asyncio.to_thread(run_ingest, gateway.docs, settings, base_url=BASE_URL)
    assert not client.keys(f"docent:answer:{gateway.index}:*")  # deleted by the ingest
    after = await http.post("/query", json=_ask(question), headers=_bearer(key))
    assert after.headers["x-cache"] == "miss"


# --- feedback -----------------------------------------------------------------------


async def test_feedback_is_stored_with_the_answer_it_rates(http):
    name, key = await _new_key()
    answer = (await http.post("/query", json=_ask(), headers=_bearer(key))).json()
    response = await http.post(
        "/feedback", json={"answer_id": answer["answer_id"], "rating": "down", "comment": "misses the backoff"},
        headers=_bearer(key),
    )
    assert response.status_code == 201, response.text
    assert response.json()["answer_id"] == answer["answer_id"]
    rows = await _sql(
        "SELECT f.rating, f.comment, f.api_key, a.question, a.llm, a.sources, a.top_score, a.timings_ms"
        " FROM feedback f JOIN answers a ON a.id = f.answer_id WHERE f.id = $1", response.json()["feedback_id"],
    )
    row = rows[0]
    assert (row["rating"], row["comment"], row["api_key"], row["llm"]) == ("down", "misses the backoff", name, "echo")
    assert row["question"] == QUESTION and json.loads(row["sources"])[0]["source"] == answer["sources"][0]["source"]
    assert row["top_score"] == pytest.approx(max(s["similarity"] for s in answer["sources"] if s["similarity"] is not None))
    assert json.loads(row["timings_ms"])["total"] > 0


async def test_a_streamed_answer_can_be_rated_as_soon_as_done_arrives(http):
    _, key = await _new_key()
    async with http.stream("POST", "/stream", json=_ask(f"{QUESTION} {uuid.uuid4().hex[:4]}"), headers=_bearer(key)) as r:
        events = dict(parse_sse([line async for line in r.aiter_lines()]))
    assert events["sources"]["answer_id"] == events["done"]["answer_id"]
    rated = await http.post("/feedback", json={"answer_id": events["done"]["answer_id"], "rating": "up"}, headers=_bearer(key))
    assert rated.status_code == 201, rated.text


async def test_a_feedback_flood_is_one_vote_then_rate_limited_and_another_keys_answer_is_unknown(http):
    owner_name, owner = await _new_key()
    _, stranger = await _new_key(scopes=("feedback",))
    answer = (await http.post("/query", json=_ask(f"{QUESTION} flood"), headers=_bearer(owner))).json()
    vote = {"answer_id": answer["answer_id"], "rating": "down"}
    foreign = await http.post("/feedback", json=vote, headers=_bearer(stranger))
    assert foreign.status_code == 404  # a key (say, one embedded in a public page) rates only its own answers
    statuses = [(await http.post("/feedback", json=vote, headers=_bearer(owner))).status_code for _ in range(RATE_LIMIT + 5)]
    assert statuses[:RATE_LIMIT] == [201] * RATE_LIMIT and set(statuses[RATE_LIMIT:]) == {429}
    votes = await _sql("SELECT rating, voter FROM feedback WHERE answer_id = $1", answer["answer_id"])
    assert [(v["rating"], v["voter"]) for v in votes] == [("down", f"key:{owner_name}")]  # one vote, however many posts
    # Feedback has its own window: the owner can still ask.
    assert (await http.post("/query", json=_ask(f"{QUESTION} after flood"), headers=_bearer(owner))).status_code == 200


@pytest.mark.parametrize(("body", "status", "field"), [
    ({"answer_id": "no-such-answer", "rating": "up"}, 404, None),
    ({"answer_id": "x", "rating": "meh"}, 422, "rating"),
    ({"rating": "up"}, 422, "answer_id"),
    ({"answer_id": "x", "rating": "up", "comment": "x" * 2001}, 422, "comment"),
])
async def test_bad_feedback_is_refused_with_a_message(http, body, status, field):
    _, key = await _new_key()
    response = await http.post("/feedback", json=body, headers=_bearer(key))
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    if field:
        assert any(field in e["loc"] for e in detail), detail
    else:
        assert "no answer with answer_id" in detail


# --- Redis failures -----------------------------------------------------------------


async def test_with_redis_killed_the_gateway_keeps_answering_and_readyz_says_so(http, redis):
    _, key = await _new_key()
    redis.stop()
    try:
        for n in range(3):
            response = await http.post("/query", json=_ask(f"{QUESTION} redis down {n}"), headers=_bearer(key))
            assert response.status_code == 200, response.text
            assert response.headers["x-cache"] == "miss"
        ready = await http.get("/readyz")
        assert ready.status_code == 200 and "redis" in ready.json()["degraded"]
        assert "docent_redis_errors_total" in (await http.get("/metrics")).text
    finally:
        restarted = start_redis(redis.port)
        redis.process = restarted.process
    deadline = time.monotonic() + 10
    while (await http.get("/readyz")).json()["degraded"] and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert not (await http.get("/readyz")).json()["degraded"]
