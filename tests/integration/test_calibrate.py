"""`docent calibrate` end to end: the real CLI over an index of the fixture site, the model stored in PostgreSQL
and picked up by a retriever service that was loaded before it."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from docent.db import connect
from docent.settings import Settings
from docent.types import QueryOptions
from ingest.pipeline import run_ingest
from services.gateway.local import close_local_pipeline, open_local_pipeline
from tests.conftest import FIXTURES, ROOT

pytestmark = pytest.mark.integration

BASE_URL = "https://orbit.example/docs/"
CLI_TIMEOUT_S = 600
TARGET = 0.1

# Questions the fixture site answers, each with the page (and section) that does.
IN_SCOPE = [
    ("How many times is a failed job retried?", "guide/configuration.html#retries-and-backoff"),
    ("How long does Orbit wait between two attempts of a failed job?", "guide/configuration.html#retries-and-backoff"),
    ("How do I turn off retries for failed jobs?", "guide/configuration.html#retries-and-backoff"),
    ("What does the max_workers setting control?", "guide/configuration.html#worker-count"),
    ("How do I stop a job that runs for too long?", "guide/configuration.html#timeouts"),
    ("Which Python version does Orbit need?", "guide/install.html"),
    ("How do I install Orbit with pip?", "guide/install.html#install-with-pip"),
    ("How do I install Orbit from a clone of its source?", "guide/install.html#install-from-source"),
    ("How do I submit a job to the Orbit scheduler?", "index.html#getting-started"),
    ("How can I see how my job is doing?", "index.html#getting-started"),
    ("How do I cancel a queued job?", "api/client.html#client-cancel"),
    ("What does Client.submit return?", "api/client.html#client-submit"),
    ("How do I create a client and submit a function in the quickstart?", "tutorials/quickstart.html"),
]
NOT_INDEXED = ("How do I open Orbit's web dashboard?", "guide/dashboard.html")  # no such page: left out
OUT_OF_SCOPE = [
    ("Give me a good recipe for banana bread", "general"),
    ("Who won the 2018 World Cup?", "general"),
    ("What is the capital of Australia?", "general"),
    ("How do I fix a flat bicycle tyre?", "general"),
    ("Can you recommend a science fiction novel?", "general"),
    ("How do I scale a deployment with kubectl?", "other product"),
    ("How do I make a pivot table in Excel?", "other product"),
    ("How do I rebase a branch in git?", "other product"),
    ("What is PostgreSQL's default port?", "other product"),
    ("How do I write a Dockerfile for a React app?", "other product"),
    ("What does the enterprise plan cost?", "not in the docs"),
    ("Is there a free trial of Orbit Cloud?", "not in the docs"),
    ("Does Orbit support single sign-on with SAML?", "not in the docs"),
    ("How do I open a support ticket?", "not in the docs"),
    ("What uptime does the SLA guarantee?", "not in the docs"),
]


@pytest.fixture(scope="module")
def orbit_index(ray_local, tmp_path_factory) -> Settings:
    docs = tmp_path_factory.mktemp("calibrate") / "docs"
    shutil.copytree(FIXTURES / "site", docs)
    settings = Settings(index=f"calibrate-{uuid.uuid4().hex[:8]}", chunking={"chunk_size": 200, "chunk_overlap": 20})
    run_ingest(docs, settings, base_url=BASE_URL)
    return settings


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture(scope="module")
def question_sets(tmp_path_factory) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp("scope-sets")
    inside = [{"question": q, "source": BASE_URL + page} for q, page in [*IN_SCOPE, NOT_INDEXED]]
    outside = [{"question": q, "category": category} for q, category in OUT_OF_SCOPE]
    return _jsonl(work / "in-scope.jsonl", inside), _jsonl(work / "out-of-scope.jsonl", outside)


def _calibrate(*args: str) -> subprocess.CompletedProcess:
    """`docent calibrate` as a user runs it, on the tests' database and data dir (from the environment)."""
    # A wide console: an error message is one line, not wrapped at 80 columns.
    return subprocess.run([sys.executable, "-m", "cli", "calibrate", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "1000"}, timeout=CLI_TIMEOUT_S, check=False)


def _calibrated(run: subprocess.CompletedProcess) -> dict:
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


async def _stored_scopes(index: str) -> list:
    conn = await connect(Settings())
    try:
        return await conn.fetch(
            "SELECT s.model, s.calibrated_at FROM index_scopes s JOIN indexes i ON i.id = s.index_id WHERE i.name = $1", index
        )
    finally:
        await conn.close()


def _assert_report(report: dict, index: str, stored: bool, target: float) -> None:
    assert report["index"] == index and report["stored"] is stored
    assert (report["in_scope"], report["out_of_scope"], report["skipped_not_indexed"]) == (len(IN_SCOPE), len(OUT_OF_SCOPE), 1)
    fitted = report["model"]["calibration"]
    assert (fitted["in_scope"], fitted["out_of_scope"]) == (len(IN_SCOPE), len(OUT_OF_SCOPE))
    assert fitted["target_in_scope_abstained"] == target
    assert fitted["in_scope_abstained"] <= target
    assert set(report["out_of_scope_abstained_by_category"]) == {category for _, category in OUT_OF_SCOPE}


async def test_a_dry_run_reports_the_fit_but_stores_nothing(orbit_index, question_sets):
    inside, outside = question_sets
    before = await _stored_scopes(orbit_index.index_name)
    run = await asyncio.to_thread(
        _calibrate, "--in-scope", str(inside), "--out-of-scope", str(outside), "--index", orbit_index.index_name,
        "--target", str(TARGET), "--dry-run", "--json",
    )
    _assert_report(_calibrated(run), orbit_index.index_name, stored=False, target=TARGET)
    assert await _stored_scopes(orbit_index.index_name) == before


async def test_calibration_is_stored_replaced_by_a_second_run_and_picked_up_by_a_loaded_retriever(orbit_index, question_sets):
    inside, outside = question_sets
    index = orbit_index.index_name
    # A served retriever, loaded before the index is calibrated; it refreshes only when told to here.
    pipeline = await open_local_pipeline(orbit_index.model_copy(update={"serving": orbit_index.serving.model_copy(
        update={"index_refresh_s": 3600})}))
    try:
        service = pipeline.retriever
        question = IN_SCOPE[0][0]
        before = await service.search(question, index, QueryOptions())
        assert before.scope is not None and before.scope.calibrated is False
        assert before.scope.threshold == Settings().abstention.min_similarity

        first = _calibrated(await asyncio.to_thread(
            _calibrate, "--in-scope", str(inside), "--out-of-scope", str(outside), "--index", index, "--json"
        ))
        _assert_report(first, index, stored=True, target=Settings().abstention.max_in_scope_abstained)
        rows = await _stored_scopes(index)
        assert len(rows) == 1 and json.loads(rows[0]["model"]) == first["model"]

        assert await service.refresh() == [index]
        after = await service.search(question, index, QueryOptions())
        assert after.scope.calibrated is True and after.scope.threshold == first["model"]["threshold"]
        assert after.scope.in_scope is True
        off_topic = await service.search(OUT_OF_SCOPE[0][0], index, QueryOptions())
        assert off_topic.scope.calibrated is True and off_topic.scope.in_scope is False
        assert await service.refresh() == []  # nothing changed since: nothing reloaded

        second = _calibrated(await asyncio.to_thread(
            _calibrate, "--in-scope", str(inside), "--out-of-scope", str(outside), "--index", index,
            "--target", str(TARGET), "--json",
        ))
        _assert_report(second, index, stored=True, target=TARGET)
        replaced = await _stored_scopes(index)
        assert len(replaced) == 1 and json.loads(replaced[0]["model"]) == second["model"]
        assert replaced[0]["calibrated_at"] > rows[0]["calibrated_at"]
        assert await service.refresh() == [index]
        assert (await service.search(question, index, QueryOptions())).scope.threshold == second["model"]["threshold"]
    finally:
        await close_local_pipeline(pipeline)


def _assert_one_line_error(run: subprocess.CompletedProcess, code: int, *words: str) -> None:
    """Exit `code` with one `error:` line on stderr naming `words`; no traceback."""
    assert run.returncode == code, (run.returncode, run.stdout, run.stderr)
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), run.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])


def test_a_missing_in_scope_file_is_a_usage_error(orbit_index, question_sets, tmp_path):
    missing = tmp_path / "nowhere.jsonl"
    run = _calibrate("--in-scope", str(missing), "--out-of-scope", str(question_sets[1]), "--index", orbit_index.index_name)
    _assert_one_line_error(run, 2, "in-scope set not found", "nowhere.jsonl")


def test_in_scope_questions_about_pages_not_in_the_index_are_refused(orbit_index, question_sets, tmp_path):
    elsewhere = _jsonl(tmp_path / "elsewhere.jsonl", [
        {"question": "How do I autoscale a Ray Serve deployment?", "source": "https://docs.ray.io/en/master/serve/autoscaling.html"},
        {"question": NOT_INDEXED[0], "source": BASE_URL + NOT_INDEXED[1]},
    ])
    before = asyncio.run(_stored_scopes(orbit_index.index_name))
    run = _calibrate("--in-scope", str(elsewhere), "--out-of-scope", str(question_sets[1]), "--index", orbit_index.index_name)
    assert run.returncode != 0, run.stdout
    _assert_one_line_error(run, run.returncode, "gold pages", "in the index")
    assert asyncio.run(_stored_scopes(orbit_index.index_name)) == before


def test_a_row_without_a_question_is_named(orbit_index, question_sets, tmp_path):
    broken = _jsonl(tmp_path / "broken.jsonl", [
        {"question": IN_SCOPE[0][0], "source": BASE_URL + IN_SCOPE[0][1]},
        {"source": BASE_URL + IN_SCOPE[1][1]},
    ])
    run = _calibrate("--in-scope", str(broken), "--out-of-scope", str(question_sets[1]), "--index", orbit_index.index_name)
    _assert_one_line_error(run, 2, "line 2", "has no question")


def test_an_unknown_index_is_a_usage_error(question_sets):
    inside, outside = question_sets
    run = _calibrate("--in-scope", str(inside), "--out-of-scope", str(outside), "--index", "no-such-index")
    _assert_one_line_error(run, 2, "no-such-index")
