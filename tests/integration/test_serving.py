"""The Serve application end to end: real Ray Serve, real PostgreSQL, real HTTP; the LLMs are the test server."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from docent.citations import CitationChecker, best_sentence, claims
from docent.client import parse_sse
from docent.db import connect
from docent.settings import Settings
from docent.types import page_of
from ingest.pipeline import run_ingest
from services.generator.extractive import load_extractive
from tests.conftest import FIXTURES, ROOT, SHARED, require
from tests.gateway_fixtures import free_port
from tests.llm_server import NOT_COVERED_REPLY

pytestmark = pytest.mark.integration

BASE_URL = "https://orbit.example/docs/"
RETRIES_PAGE = f"{BASE_URL}guide/configuration.html"
QUESTION = "How many times is a failed job retried, and how long between attempts?"
LOGS_WITHIN_S = 10.0
# The deployments an extractive /query passes through (the router is asked only when it has a choice).
LOGGED_DEPLOYMENTS = {"gateway", "retriever", "embedder", "generator"}
READY_WITHIN_S = 60
ABORT_SEEN_WITHIN_S = 10


@dataclass
class Gateway:
    url: str
    index: str
    router_trained: bool


def _llms(base_url: str) -> list[dict]:
    llm = {"base_url": base_url, "api_key_env": "DOCENT_TEST_NO_KEY", "context_length": 2048, "max_tokens": 64}
    return [
        {**llm, "name": "echo", "model": "echo", "prompt_price": 1.0, "sampled_price": 2.0},
        {**llm, "name": "flaky", "model": "flaky-429", "max_retries": 2},
        {**llm, "name": "broken", "model": "always-500", "max_retries": 1},
        {**llm, "name": "slow", "model": "slow", "timeout_s": 1, "max_retries": 0},
        {**llm, "name": "stalling", "model": "stalls-mid-answer", "timeout_s": 1, "max_retries": 0},
        {**llm, "name": "dawdler", "model": "tokens-slow"},
        {**llm, "name": "unsure", "model": "not-covered"},
    ]


def _train_router(path: Path) -> bool:
    routing = SHARED / "datasets" / "routing-dataset-train.jsonl"
    require(routing.is_file(), f"routing dataset at {routing}")
    from training.router import load_routing_rows, train_router

    router, _ = train_router(load_routing_rows(routing), folds=2)
    router.model.save(path)
    return True


def _wait_ready(client: httpx.Client) -> httpx.Response:
    deadline = time.monotonic() + READY_WITHIN_S
    while True:
        response = client.get("/readyz")
        if response.status_code == 200 or time.monotonic() > deadline:
            return response
        time.sleep(0.5)


def _served_logging_config() -> dict:
    """The logging of services/gateway/serve.yaml's application: the tests log as production does."""
    served = yaml.safe_load((ROOT / "services" / "gateway" / "serve.yaml").read_text())
    return served["applications"][0]["logging_config"]


@pytest.fixture(scope="module")
def gateway(ray_local, llm_server, tmp_path_factory):
    """The app deployed before its index exists (readiness says so), then the index ingested."""
    from ray import serve

    from services.gateway.deployment import build_app

    index = f"serve-{uuid.uuid4().hex[:8]}"
    work = tmp_path_factory.mktemp("serving")
    router_trained = _train_router(work / "router.zip")
    args = {
        "index": index,
        "auth_enabled": False,  # keys, limits and the response cache are tested in test_gateway_policies.py
        "gateway": {"cache": {"enabled": False}, "rate_limit": {"enabled": False}},
        "chunking": {"chunk_size": 200, "chunk_overlap": 20},
        "router": {"artifact": str(work / "router.zip")},
        "generation": {"llms": _llms(llm_server.base_url), "oss_llm": "echo", "strong_llm": "flaky", "fallback": ["echo"]},
        # A batch waits briefly for company, so that concurrent queries surely share a pass.
        "serving": {"index_refresh_s": 1, "max_query_chars": 500, "embed_batch_wait_s": 0.02},
    }
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(args), name="docent", route_prefix="/", logging_config=_served_logging_config())
    url = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=url, timeout=30) as client:
        before = client.get("/readyz")
        assert before.status_code == 503 and "index" in before.json()["problems"]
        assert before.headers["Retry-After"]
        docs = work / "docs"
        shutil.copytree(FIXTURES / "site", docs)
        run_ingest(docs, Settings(index=index, chunking=args["chunking"]), base_url=BASE_URL)
        after = _wait_ready(client)
        assert after.status_code == 200, after.text
    yield Gateway(url, index, router_trained)
    serve.shutdown()


@pytest.fixture
async def http(gateway):
    async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as client:
        yield client


async def _events(http: httpx.AsyncClient, method: str, **kwargs) -> list[tuple[str, dict]]:
    async with http.stream(method, "/stream", **kwargs) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return list(parse_sse([line async for line in response.aiter_lines()]))


async def test_query_answers_extractively_with_cited_sources_and_timings(http):
    response = await http.post("/query", json={"query": QUESTION, "options": {"llm": "extractive"}})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["llm"] == "extractive" and answer["route"]["reason"] == "asked for by the request"
    assert answer["sources"][0]["source"].startswith(RETRIES_PAGE)
    cited = {int(n) for n in re.findall(r"\[(\d+)\]", answer["answer"])}
    assert cited and cited <= {s["number"] for s in answer["sources"]}
    assert set(answer["timings_ms"]) == {"embed", "retrieve", "rerank", "route", "generate", "total"}
    assert answer["cost"] == 0 and answer["usage"]["prompt_tokens"] == 0


async def test_the_router_picks_the_llm_and_says_why(http, gateway, llm_server):
    response = await http.post("/query", json={"query": QUESTION})
    answer = response.json()
    assert response.status_code == 200, answer
    route = answer["route"]
    assert route["llm"] in ("echo", "flaky") and 0 <= route["probability_oss"] <= 1
    assert f"{route['probability_oss']:.2f}" in route["reason"]
    assert answer["llm"] == route["llm"] and not answer["fallbacks"]
    prompt = llm_server.requests_about(QUESTION)[-1]["messages"][-1]["content"]
    assert "[1]" in prompt and answer["sources"][0]["source"] in prompt


async def test_an_llm_answer_reports_usage_and_cost_from_its_prices(http):
    answer = (await http.post("/query", json={"query": QUESTION, "options": {"llm": "echo"}})).json()
    usage = answer["usage"]
    assert answer["llm"] == "echo" and usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert answer["cost"] == pytest.approx((usage["prompt_tokens"] * 1.0 + usage["completion_tokens"] * 2.0) / 1e6)
    assert "[1]" in answer["answer"]


async def test_a_429_is_retried_and_the_same_llm_answers(http):
    question = f"{QUESTION} ({uuid.uuid4().hex[:6]})"
    answer = (await http.post("/query", json={"query": question, "options": {"llm": "flaky"}})).json()
    assert answer["llm"] == "flaky" and answer["fallbacks"] == []


@pytest.mark.parametrize(("llm", "reason"), [("broken", "HTTP 500"), ("slow", "timed out")])
async def test_a_failing_llm_falls_back_and_says_so(http, llm, reason):
    response = await http.post("/query", json={"query": QUESTION, "options": {"llm": llm}})
    answer = response.json()
    assert response.status_code == 200, answer
    assert answer["route"]["llm"] == llm and answer["llm"] == "echo"
    assert answer["fallbacks"][0]["llm"] == llm and reason in answer["fallbacks"][0]["reason"]


async def test_stream_sends_sources_then_tokens_then_done(http):
    body = {"query": QUESTION, "options": {"llm": "extractive"}}
    events = await _events(http, "POST", json=body)
    names = [name for name, _ in events]
    assert names[0] == "sources" and names[-1] == "done" and set(names[1:-1]) == {"token"}
    streamed = "".join(data["text"] for name, data in events if name == "token")
    answer = (await http.post("/query", json=body)).json()
    assert streamed == answer["answer"]
    # Which sources the answer cites is known only once it is written: the `done` event says (see below).
    unchecked = [{k: v for k, v in s.items() if k not in ("cited", "snippet")} for s in answer["sources"]]
    assert [{k: v for k, v in s.items() if k not in ("cited", "snippet")} for s in events[0][1]["sources"]] == unchecked
    assert events[-1][1]["llm"] == "extractive" and "total" in events[-1][1]["timings_ms"]


async def test_get_stream_takes_the_question_and_options_as_parameters(http):
    events = await _events(http, "GET", params={"query": QUESTION, "llm": "echo", "num_chunks": 2})
    assert len(events[0][1]["sources"]) == 2
    assert events[-1][0] == "done" and events[-1][1]["llm"] == "echo"


async def test_a_failure_mid_stream_is_an_error_event(http):
    events = await _events(http, "POST", json={"query": QUESTION, "options": {"llm": "stalling"}})
    names = [name for name, _ in events]
    assert names[0] == "sources" and "token" in names and names[-1] == "error"
    assert "timed out" in events[-1][1]["message"]


async def test_a_failure_midway_on_query_falls_back_since_nothing_was_shown(http):
    response = await http.post("/query", json={"query": f"{QUESTION} (midway)", "options": {"llm": "stalling"}})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["fallbacks"][0]["llm"] == "stalling" and "midway" in answer["fallbacks"][0]["reason"]
    assert answer["llm"] != "stalling" and not answer["answer"].startswith("Ray  ")


async def test_a_client_that_disconnects_cancels_the_llm_stream(http, llm_server):
    question = f"{QUESTION} (disconnect {uuid.uuid4().hex[:6]})"
    async with http.stream("POST", "/stream", json={"query": question, "options": {"llm": "dawdler"}}) as response:
        tokens = 0
        async for line in response.aiter_lines():
            tokens += line.startswith("event: token")
            if tokens == 2:
                break
    deadline = time.monotonic() + ABORT_SEEN_WITHIN_S
    while not any(question in aborted for aborted in llm_server.aborted_streams):
        assert time.monotonic() < deadline, "the LLM kept streaming to a client that had gone"
        await asyncio.sleep(0.2)


async def test_twenty_concurrent_queries_all_answer(http):
    questions = [f"{QUESTION} #{i}" for i in range(20)]
    responses = await asyncio.gather(*(http.post("/query", json={"query": q}) for q in questions))
    assert [r.status_code for r in responses] == [200] * 20
    assert [r.json()["question"] for r in responses] == questions


async def test_concurrent_queries_share_embedding_passes_and_repeats_hit_the_cache(http):
    from ray import serve

    embedder = serve.get_deployment_handle("embedder", app_name="docent")
    before = await embedder.stats.remote()
    questions = [f"which backoff applies to retry number {i}?" for i in range(16)]
    vectors = await asyncio.gather(*(embedder.embed.remote(q, "all-MiniLM-L6-v2") for q in questions))
    assert len({v.tobytes() for v in vectors}) == 16
    answer = await http.post("/query", json={"query": questions[0], "options": {"llm": "extractive"}})
    assert answer.status_code == 200
    after = await embedder.stats.remote()
    new_batches = after["batch_sizes"][len(before["batch_sizes"]):]
    assert sum(new_batches) == 17 and max(new_batches) > 1
    assert after["cache_hits"] == before["cache_hits"] + 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"query": "   "}, "query"),
        ({"query": "x" * 501}, "query"),
        ({"query": 5}, "query"),
        ({"query": "ok", "options": {"num_chunks": "5"}}, "num_chunks"),
        ({"query": "ok", "options": {"shiny": True}}, "shiny"),
        ({"query": "ok", "options": {"llm": "gpt-9"}}, "llm"),
        ({"query": "ok", "options": {"num_chunks": 999}}, "num_chunks"),
        ({"question": "ok"}, "query"),
    ],
)
async def test_bad_requests_get_422_naming_the_field(http, body, field):
    for endpoint in ("/query", "/stream"):
        response = await http.post(endpoint, json=body)
        assert response.status_code == 422, (endpoint, response.text)
        assert field in json.dumps(response.json()["detail"])


async def test_bad_stream_parameters_get_422(http):
    assert (await http.get("/stream")).status_code == 422
    response = await http.get("/stream", params={"query": "ok", "mode": "psychic"})
    assert response.status_code == 422 and "mode" in response.text


async def test_an_unknown_index_is_404(http):
    response = await http.post("/query", json={"query": "ok", "index": "no-such-index"})
    assert response.status_code == 404 and "no-such-index" in response.json()["detail"]


async def test_health_docs_and_metrics(http):
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    assert "/query" in (await http.get("/openapi.json")).json()["paths"]
    assert (await http.get("/docs")).status_code == 200
    await http.post("/query", json={"query": QUESTION, "options": {"llm": "broken"}})
    metrics = (await http.get("/metrics")).text
    assert 'docent_requests_total{endpoint="/query",status="200"}' in metrics
    assert 'docent_llm_fallbacks_total{llm="broken"}' in metrics
    assert 'docent_stage_seconds_count{stage="retrieve"}' in metrics
    assert 'docent_llm_tokens_total{kind="prompt",llm="echo"}' in metrics


def test_docent_query_prints_the_answer_and_its_sources(gateway):
    run = subprocess.run(
        [sys.executable, "-m", "cli", "query", QUESTION, "--url", gateway.url, "--llm", "echo", "--json"],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=False
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["llm"] == "echo"
    streamed = subprocess.run(
        [sys.executable, "-m", "cli", "query", QUESTION, "--url", gateway.url, "--stream", "--llm", "extractive"],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=False
    )
    assert streamed.returncode == 0, streamed.stderr
    # The cited sources come first (docent query prints the snippet used under each), then the others.
    assert "Cited sources" in streamed.stdout and RETRIES_PAGE in streamed.stdout.replace("\n", "")
    missing = subprocess.run(
        [sys.executable, "-m", "cli", "query", "ok", "--url", gateway.url, "--index", "no-such-index"],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=False
    )
    assert missing.returncode == 2 and "no-such-index" in missing.stderr and "Traceback" not in missing.stderr


# --- trust: abstention and checked citations --------------------------------------------

OFF_TOPIC = ("What does the enterprise plan cost?", "Give me a good recipe for banana bread")
ABSTAINED_TEXT = "The documentation doesn't seem to cover this."
NEAREST_PAGES = 3  # abstention.nearest_pages


def _cited_numbers(text: str) -> set[int]:
    return {int(n) for n in re.findall(r"\[(\d+)\]", text)}


def _squeezed(text: str) -> str:
    return " ".join(text.split())


def _assert_sources_say_what_is_cited(answer: dict) -> None:
    """Every source the text cites says `cited` with a snippet; the others neither."""
    cited = _cited_numbers(answer["answer"])
    for source in answer["sources"]:
        if source["number"] in cited:
            assert source["cited"] is True and source["snippet"].strip(), source
        else:
            assert source["cited"] is False and source["snippet"] == "", source


def _done_sources(answer: dict) -> list[dict]:
    return [{"number": s["number"], "cited": s["cited"], "snippet": s["snippet"]} for s in answer["sources"]]


async def _logged(answer_id: str):
    """The answer log's row of an answer (the gateway writes it before it replies)."""
    conn = await connect(Settings())
    try:
        return await conn.fetchrow("SELECT abstained, unsupported_citations, llm FROM answers WHERE id = $1", answer_id)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def citation_checker() -> CitationChecker:
    """The checker the generator deployment runs: the same static token vectors, the same threshold."""
    settings = Settings()
    embedder = load_extractive(settings.embedding, settings.generation).embedder
    return CitationChecker(embedder, settings.generation.citation_threshold)


async def test_an_extractive_answer_carries_supported_citations_and_marks_its_cited_sources(http):
    body = {"query": QUESTION, "options": {"llm": "extractive"}}
    response = await http.post("/query", json=body)
    answer = response.json()
    assert response.status_code == 200, answer
    assert answer["abstained"] is False and answer["llm"] == "extractive"
    numbers = {s["number"] for s in answer["sources"]}
    assert answer["citations"], answer["answer"]
    for citation in answer["citations"]:
        assert citation["sentence"] and "[" not in citation["sentence"]
        assert citation["sources"] and set(citation["sources"]) <= numbers
        assert citation["supported"] is True and 0 < citation["score"] <= 1, citation
    # Every number in the text is a checked citation, and the other way round.
    assert {n for c in answer["citations"] for n in c["sources"]} == _cited_numbers(answer["answer"])
    _assert_sources_say_what_is_cited(answer)
    for source in answer["sources"]:
        if source["cited"]:  # the offline answer quotes its source: the snippet is the source's own words
            for part in source["snippet"].split(" … "):
                assert _squeezed(part) in _squeezed(source["text"]), (part, source["text"])
    assert (await _logged(answer["answer_id"]))["unsupported_citations"] == 0

    events = await _events(http, "POST", json=body)
    assert events[-1][0] == "done", events[-1]
    done = events[-1][1]
    assert done["abstained"] is False and done["llm"] == "extractive"
    assert done["citations"] == answer["citations"]
    assert done["sources"] == _done_sources(answer)


@pytest.mark.parametrize("question", OFF_TOPIC)
async def test_an_off_topic_question_abstains_with_the_nearest_pages_and_no_llm(http, llm_server, question):
    asked, requests = len(llm_server.requests_about(question)), len(llm_server.requests)
    response = await http.post("/query", json={"query": question})  # no llm asked for: the router would pick one
    answer = response.json()
    assert response.status_code == 200, answer
    assert answer["abstained"] is True and answer["llm"] == "none"
    assert answer["cost"] == 0 and answer["usage"]["prompt_tokens"] == answer["usage"]["completion_tokens"] == 0
    assert answer["citations"] == [] and answer["fallbacks"] == []
    assert not any(s["cited"] or s["snippet"] for s in answer["sources"])
    head, _, pages = answer["answer"].partition("\n\nThe nearest pages:\n")
    assert head == ABSTAINED_TEXT, answer["answer"]
    links = re.findall(r"^- \[([^\]]+)\]\((\S+)\)$", pages, re.MULTILINE)
    assert len(links) == len(pages.splitlines()), pages
    nearest = list(dict.fromkeys(page_of(s["source"]) for s in answer["sources"]))[:NEAREST_PAGES]
    assert [url for _, url in links] == nearest and all(title for title, _ in links)
    assert len(llm_server.requests_about(question)) == asked and len(llm_server.requests) == requests
    logged = await _logged(answer["answer_id"])
    assert logged["abstained"] is True and logged["unsupported_citations"] == 0 and logged["llm"] == "none"


async def test_an_abstained_stream_ends_with_a_done_event_that_says_so(http, llm_server):
    question = OFF_TOPIC[0]
    asked = len(llm_server.requests_about(question))
    events = await _events(http, "POST", json={"query": question})
    names = [name for name, _ in events]
    assert names[0] == "sources" and names[-1] == "done" and set(names[1:-1]) == {"token"}, names
    assert "".join(data["text"] for name, data in events if name == "token").startswith(ABSTAINED_TEXT)
    done = events[-1][1]
    assert done["abstained"] is True and done["llm"] == "none" and done["cost"] == 0 and done["citations"] == []
    assert [s["number"] for s in done["sources"]] == [s["number"] for s in events[0][1]["sources"]]
    assert not any(s["cited"] or s["snippet"] for s in done["sources"])
    assert len(llm_server.requests_about(question)) == asked


async def test_with_abstention_off_an_off_topic_question_is_answered_by_the_llm(http, llm_server):
    question = OFF_TOPIC[0]
    asked = len(llm_server.requests_about(question))
    response = await http.post("/query", json={"query": question, "options": {"abstain": False}})
    answer = response.json()
    assert response.status_code == 200, answer
    assert answer["abstained"] is False and answer["llm"] in ("echo", "flaky")
    assert not answer["answer"].startswith(ABSTAINED_TEXT)
    assert len(llm_server.requests_about(question)) > asked


async def test_get_stream_takes_abstain_as_a_parameter(http):
    events = await _events(http, "GET", params={"query": OFF_TOPIC[0], "abstain": "false", "llm": "echo"})
    assert events[-1][0] == "done" and events[-1][1]["abstained"] is False and events[-1][1]["llm"] == "echo"


async def test_an_llm_saying_the_sources_do_not_cover_the_question_is_flagged_abstained(http, llm_server):
    body = {"query": QUESTION, "options": {"llm": "unsure"}}
    asked = len(llm_server.requests_about(QUESTION))
    response = await http.post("/query", json=body)
    answer = response.json()
    assert response.status_code == 200, answer
    assert answer["answer"] == NOT_COVERED_REPLY
    assert answer["abstained"] is True and answer["llm"] == "unsure" and answer["fallbacks"] == []
    assert answer["citations"] == [] and not any(s["cited"] for s in answer["sources"])
    assert len(llm_server.requests_about(QUESTION)) == asked + 1  # it was the LLM that said so
    logged = await _logged(answer["answer_id"])
    assert logged["abstained"] is True and logged["llm"] == "unsure"

    events = await _events(http, "POST", json=body)
    done = events[-1][1]
    assert events[-1][0] == "done" and done["abstained"] is True and done["llm"] == "unsure"


async def test_an_llm_answers_citation_is_checked_against_the_source_it_cites(http, citation_checker):
    response = await http.post("/query", json={"query": QUESTION, "options": {"llm": "echo"}})
    answer = response.json()
    assert response.status_code == 200, answer
    assert answer["llm"] == "echo" and answer["answer"].startswith("Ray Serve scales deployments [1].")
    expected = citation_checker.check(answer["answer"], [s["text"] for s in answer["sources"]])
    assert [c.sentence for c in expected] == ["Ray Serve scales deployments"]
    assert len(answer["citations"]) == 1
    got = answer["citations"][0]
    assert (got["sentence"], got["sources"], got["supported"]) == (expected[0].sentence, [1], expected[0].supported)
    assert got["score"] == pytest.approx(expected[0].score, abs=1e-3)
    assert answer["abstained"] is False
    first, rest = answer["sources"][0], answer["sources"][1:]
    assert first["cited"] is True and first["snippet"] == best_sentence(expected[0].sentence, first["text"])
    assert not any(s["cited"] or s["snippet"] for s in rest)
    assert [c.sources for c in claims(answer["answer"])] == [(1,)]
    logged = await _logged(answer["answer_id"])
    assert logged["abstained"] is False
    assert logged["unsupported_citations"] == sum(not c["supported"] for c in answer["citations"])

    events = await _events(http, "POST", json={"query": QUESTION, "options": {"llm": "echo"}})
    done = events[-1][1]
    assert done["citations"] == answer["citations"] and done["sources"] == _done_sources(answer)


def _serve_log_lines(request_id: str) -> dict[str, list[dict]]:
    """deployment → the JSON lines of its replicas' logs that carry `request_id`."""
    import ray

    found: dict[str, list[dict]] = {}
    logs = Path(ray._private.worker._global_node.get_logs_dir_path()) / "serve"
    for path in logs.glob("replica_docent_*.log"):
        for line in path.read_text(errors="replace").splitlines():
            if request_id not in line:
                continue
            record = json.loads(line)  # JSON encoding: every line is one object
            found.setdefault(record["deployment"].removeprefix("docent_"), []).append(record)  # app_deployment
    return found


async def test_a_request_id_is_echoed_and_carried_into_every_deployments_json_log(http):
    chosen = f"req-{uuid.uuid4().hex[:12]}"
    response = await http.post("/query", json={"query": "How do I install Orbit?", "options": {"llm": "extractive"}},
                               headers={"X-Request-ID": chosen})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == chosen and response.json()["answer_id"]

    generated = await http.post("/query", json={"query": "How do I cancel a job?", "options": {"llm": "extractive"}})
    assert generated.headers["x-request-id"] and generated.json()["answer_id"]

    deadline = time.monotonic() + LOGS_WITHIN_S
    while set(found := _serve_log_lines(chosen)) < LOGGED_DEPLOYMENTS and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert set(found) >= LOGGED_DEPLOYMENTS, found.keys()
    assert all(r["request_id"] == chosen for records in found.values() for r in records)
    assert any(r["message"].startswith("answered answer_id=") and " llm=extractive " in r["message"] for r in found["gateway"])


# Exported by Ray's metrics agent (prefixed ray_), from inside each deployment's replicas.
DEPLOYMENT_METRICS = {
    "ray_docent_embed_cache_hits_total", "ray_docent_embed_cache_misses_total", "ray_docent_embed_batch_size_bucket",
    "ray_docent_retrieve_seconds_bucket", "ray_docent_router_decisions_total", "ray_docent_generated_answers_total",
    "ray_docent_generated_tokens_total", "ray_docent_generate_seconds_bucket", "ray_docent_generator_fallbacks_total",
}
METRICS_WITHIN_S = 40.0  # Ray's agent exports every few seconds


def _ray_metrics() -> str:
    import ray

    port = ray._private.worker._global_node.metrics_export_port
    return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text


def test_every_deployment_exports_its_metrics_through_ray(gateway):
    """Runs after the tests above: answers, fallbacks, routed and repeated questions have all happened."""
    deadline = time.monotonic() + METRICS_WITHIN_S
    while True:
        text = _ray_metrics()
        exported = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line.startswith("ray_docent_")}
        if DEPLOYMENT_METRICS <= exported or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert DEPLOYMENT_METRICS <= exported, DEPLOYMENT_METRICS - exported
    answers = [line for line in text.splitlines() if line.startswith("ray_docent_generated_answers_total{")]
    assert any('llm="extractive"' in line and 'deployment="generator"' in line for line in answers), answers


def test_the_grafana_dashboard_only_charts_metrics_that_exist(gateway):
    """Every metric a panel queries is exported: by the gateway's /metrics, or by Ray's agent (ours and Serve's)."""
    import re

    dashboard = json.loads((ROOT / "config" / "grafana" / "docent-dashboard.json").read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        for name in re.findall(r"\b((?:ray_)?(?:docent|serve)_[a-z_]+)\b", target["expr"])
    }
    exported_text = httpx.get(f"{gateway.url}/metrics", timeout=10).text + _ray_metrics()
    exported = {line.split("{")[0].split(" ")[0] for line in exported_text.splitlines() if not line.startswith("#")}
    assert len(queried) >= 15
    assert queried <= exported, sorted(queried - exported)
