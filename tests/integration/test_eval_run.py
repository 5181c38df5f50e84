"""`docent eval run` end to end: a real index of the fixture site, the in-process pipeline, extractive answers."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from docent.datasets import EvalSetError
from docent.settings import Settings
from evaluation.runner import CONFIG_FILE, EVALUATION_FILE, RESPONSES_FILE, load_references, open_eval_set, run_eval
from ingest.pipeline import run_ingest
from tests.conftest import FIXTURES, ROOT

pytestmark = pytest.mark.integration

BASE_URL = "https://orbit.example/docs/"
RETRIES = "How many times is a failed job retried, and how long between attempts?"
MISSING_PAGE = f"{BASE_URL}security/tls.html#certificates"  # no such page in the index
TOO_LONG = "Why? " * 500  # over serving.max_query_chars: the pipeline refuses it
QUESTIONS = [
    {"question": RETRIES, "source": f"{BASE_URL}guide/configuration.html#retries-and-backoff"},
    {"question": "How do I install Orbit with pip?", "source": f"{BASE_URL}guide/install.html#install-pip"},
    {"question": "How do I cancel a running job?", "source": f"{BASE_URL}api/client.html#client-cancel"},
    {"question": "How do I configure TLS certificates?", "source": MISSING_PAGE},
    {"question": TOO_LONG.strip(), "source": f"{BASE_URL}index.html"},
]
REFERENCES = [
    {"question": RETRIES, "answer": "A failed job is retried up to max_retries times (default 3) [1].", "score": 5},
    {"question": "How do I install Orbit with pip?", "answer": "Run pip install orbit-scheduler.", "score": 5},
    {"question": "How do I configure TLS certificates?", "answer": "The docs do not say.", "score": 1},
    {"question": "How do I cancel a running job?", "answer": "", "score": 1},  # empty: no reference
]


@pytest.fixture(scope="module")
def orbit(ray_local, tmp_path_factory) -> tuple[Settings, Path]:
    """An index of the fixture site, and a folder holding the eval set and references."""
    work = tmp_path_factory.mktemp("eval-run")
    shutil.copytree(FIXTURES / "site", work / "docs")
    settings = Settings(index=f"eval-{uuid.uuid4().hex[:8]}", chunking={"chunk_size": 200, "chunk_overlap": 20})
    run_ingest(work / "docs", settings, base_url=BASE_URL)
    (work / "eval.jsonl").write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    (work / "references.json").write_text(json.dumps(REFERENCES))
    return settings, work


def _responses(path: Path) -> list[dict]:
    text = path.read_text()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


async def test_a_run_resumes_where_it_stopped_and_scores_all_and_in_corpus(orbit):
    settings, work = orbit
    eval_set, references = open_eval_set(work / "eval.jsonl"), load_references(work / "references.json")
    assert set(references) == {RETRIES, "How do I install Orbit with pip?", "How do I configure TLS certificates?"}
    out = work / "run"

    first = await run_eval(settings, eval_set, references, out, concurrency=2, limit=2)
    assert first.asked == 2 and len(_responses(out / RESPONSES_FILE)) == 2
    assert json.loads((out / EVALUATION_FILE).read_text())["aggregates"]["all"]["questions"] == 2

    with (out / RESPONSES_FILE).open("a") as file:  # a kill in the middle of writing a line
        file.write(json.dumps({"question": QUESTIONS[2]["question"], "answer": "half an ans"})[:40])
    seen: list[tuple[int, int]] = []
    second = await run_eval(settings, eval_set, references, out, concurrency=2, progress=lambda *p: seen.append(p))
    assert second.asked == 3 and seen[0] == (2, 5) and seen[-1] == (5, 5)

    rows = _responses(out / RESPONSES_FILE)
    assert sorted(r["question"] for r in rows) == sorted(q["question"] for q in QUESTIONS)
    failed = [r for r in rows if r.get("error")]
    assert [r["question"] for r in failed] == [TOO_LONG.strip()] and "characters" in failed[0]["error"]
    answered = next(r for r in rows if r["question"] == RETRIES)
    assert answered["answer"] and answered["llm"] == "extractive" and answered["timings_ms"]["total"] > 0
    assert answered["sources"][0] == QUESTIONS[0]["source"]

    evaluation = json.loads((out / EVALUATION_FILE).read_text())
    assert evaluation["config"]["index"] == settings.index_name
    assert evaluation["config"]["chunking"]["chunk_size"] == 200
    assert evaluation["eval_set"]["questions"] == 5 and len(evaluation["eval_set"]["sha256"]) == 64
    by_question = {r["question"]: r for r in evaluation["rows"]}
    assert [r["question"] for r in evaluation["rows"]] == [q["question"] for q in QUESTIONS]
    assert by_question[QUESTIONS[3]["question"]]["in_corpus"] is False
    assert by_question[QUESTIONS[3]["question"]]["scores"]["hit"] is False
    assert by_question[RETRIES]["scores"]["reciprocal_rank"] == 1.0
    retries = by_question[RETRIES]["scores"]
    assert 0 < retries["token_f1"] <= 1 and 0 < retries["answer_similarity"] <= 1
    assert "token_f1" not in by_question[QUESTIONS[2]["question"]]["scores"]  # its reference answer is empty

    every, in_corpus = evaluation["aggregates"]["all"], evaluation["aggregates"]["in_corpus"]
    assert (every["questions"], every["answered"], every["errors"], every["with_reference"]) == (5, 4, 1, 3)
    assert in_corpus["questions"] == 4 and in_corpus["with_reference"] == 2
    # 13 chunks at one per page retrieve every page of this small site: each answered
    # in-corpus question hits; the missing page and the refused question cannot.
    assert every["retrieval_score"] == pytest.approx(3 / 5) and in_corpus["retrieval_score"] == pytest.approx(3 / 4)
    assert second.aggregates == evaluation["aggregates"]

    other = settings.model_copy(update={"retrieval": settings.retrieval.model_copy(update={"num_chunks": 3})})
    with pytest.raises(EvalSetError, match="another configuration"):
        await run_eval(other, eval_set, references, out, concurrency=1)


def _docent(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "cli", "eval", "run", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)


def test_the_cli_continues_a_run_asking_only_what_failed_and_prints_json(orbit):
    settings, work = orbit
    out = work / "run"
    if not (out / CONFIG_FILE).exists():
        pytest.skip("needs the run of the test above")
    result = _docent("--eval", str(work / "eval.jsonl"), "--references", str(work / "references.json"),
                     "--out", str(out), "--index", settings.index_name, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["asked"] == 1  # the refused question, asked again; the rest were kept
    assert report["aggregates"]["all"]["questions"] == 5 and report["aggregates"]["all"]["errors"] == 1
    assert report["evaluation"] == str(out / EVALUATION_FILE)
    assert len(_responses(out / RESPONSES_FILE)) == 5


def test_the_cli_names_bad_inputs_without_a_traceback(orbit, tmp_path):
    settings, _work = orbit
    missing = _docent("--eval", str(tmp_path / "nope.jsonl"), "--index", settings.index_name)
    assert missing.returncode == 2 and "eval set not found" in missing.stderr and "Traceback" not in missing.stderr

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(QUESTIONS[0]) + "\n{not json\n")
    malformed = _docent("--eval", str(bad), "--index", settings.index_name)
    assert malformed.returncode == 2 and "line 2" in malformed.stderr and "Traceback" not in malformed.stderr


async def test_a_question_without_a_gold_source_is_answered_but_not_scored_as_a_retrieval_miss(orbit):
    settings, work = orbit
    unknown = "Why do my jobs feel slow on Mondays?"
    path = work / "flywheel-eval.jsonl"  # as `docent flywheel export` writes it: an empty source, gold unknown
    path.write_text(json.dumps(QUESTIONS[0]) + "\n"
                    + json.dumps({"question": unknown, "source": "", "flywheel": {"gold": "unknown"}}) + "\n")

    report = await run_eval(settings, open_eval_set(path), {}, work / "flywheel-run", concurrency=2)
    rows = {r["question"]: r for r in json.loads(report.evaluation.read_text())["rows"]}
    assert rows[unknown]["answer"] and rows[unknown]["sources"]  # answered from what was retrieved
    assert rows[unknown]["scores"] == {} and rows[unknown]["in_corpus"] is False
    assert rows[RETRIES]["scores"]["hit"] is True
    every, in_corpus = report.aggregates["all"], report.aggregates["in_corpus"]
    assert (every["questions"], every["answered"], every["with_gold"]) == (2, 2, 1)
    assert every["retrieval_score"] == 1.0 and every["mrr"] == 1.0  # no miss counted for the question without gold
    assert (in_corpus["questions"], in_corpus["with_gold"], in_corpus["retrieval_score"]) == (1, 1, 1.0)
