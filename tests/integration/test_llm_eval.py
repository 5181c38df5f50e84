"""LLM-graded evaluation against the real test server: Ragas-style metrics (alone and in `run_eval`),
reference answers from gold sections, golden sets generated in Ray tasks, and their CLI commands."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from docent.datasets import EvalSetError
from docent.settings import LLMSettings, Settings
from docent.tokenizer import load_tokenizer
from evaluation.golden import (
    Candidate,
    deduplicate,
    generate_golden,
    load_sections,
    parse_pair,
    sample_sections,
)
from evaluation.judge import JUDGE_SYSTEM_PROMPT
from evaluation.metrics import RAGAS_METRICS, cosine_similarity
from evaluation.ragas import RagasScorer, average_precision
from evaluation.references import PROMPT_MARGIN_TOKENS, REFERENCE_PROMPT, generate_references
from evaluation.runner import (
    EVALUATION_FILE,
    RAGAS_FILE,
    EvalSet,
    load_references,
    open_eval_set,
    run_eval,
)
from tests.conftest import FIXTURES, ROOT, require
from tests.integration.test_eval_run import BASE_URL, MISSING_PAGE, QUESTIONS, RETRIES
from tests.llm_server import GOLDEN_KINDS, golden_kind, relevancy_questions, supported

pytestmark = pytest.mark.integration

ATTEMPTS = 3
RETRIES_SOURCE = f"{BASE_URL}guide/configuration.html#retries-and-backoff"
NO_SUCH_ANCHOR = f"{BASE_URL}guide/configuration.html#no-such-section"  # its page is indexed, the section is not
RETRIES_TEXT = ("A failed job is retried up to `max_retries` times (default 3), waiting `backoff_seconds * 2**attempt` "
                "between attempts. Set `max_retries: 0` to disable retries.")
MIN_CHARS = Settings().evaluation.golden_min_section_chars
SHORT_SECTION_CHARS = 50  # the fixture site's sections are short: most are under MIN_SECTION_CHARS
INSTALL_TEXT = "Install Orbit with pip install orbit-scheduler, then start the scheduler daemon."


def _llm(server, model: str, **overrides) -> LLMSettings:
    return LLMSettings(name=model, model=model, base_url=server.base_url, **overrides)


@pytest.fixture(scope="module")
def embedder():
    from docent.embedding.model import load_embedder

    return load_embedder(Settings().embedding)


@pytest.fixture(scope="module")
def orbit(ray_local, tmp_path_factory, llm_server) -> tuple[Settings, Path]:
    """An index of the fixture site with the test server's LLMs configured (answers stay extractive)."""
    import shutil
    import uuid

    from ingest.pipeline import run_ingest

    work = tmp_path_factory.mktemp("llm-eval")
    shutil.copytree(FIXTURES / "site", work / "docs")
    llms = [{"name": m, "model": m, "base_url": llm_server.base_url}
            for m in ("ragas", "reference", "golden", "golden-garbled")]
    # Every question gets an answer to grade: abstention (tested in test_serving.py and test_calibrate.py) is off,
    # as the uncalibrated floor abstains on terse questions about this small site ("What changed in version 1.2?").
    config = {"index": f"llm-eval-{uuid.uuid4().hex[:8]}", "chunking": {"chunk_size": 200, "chunk_overlap": 20},
              "generation": {"llms": llms}, "evaluation": {"judge": "ragas", "golden_sections_per_task": 5},
              "abstention": {"enabled": False}}
    settings = Settings(**config)
    run_ingest(work / "docs", settings, base_url=BASE_URL)
    (work / "docent.yaml").write_text(yaml.safe_dump(config))
    (work / "eval.jsonl").write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    references = [{"question": RETRIES, "answer": "A failed job is retried up to max_retries times (default 3)."},
                  {"question": "How do I install Orbit with pip?", "answer": "Run pip install orbit-scheduler."}]
    (work / "references.json").write_text(json.dumps(references))
    return settings, work


def _docent(work: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "cli", "--config", str(work / "docent.yaml"), "eval", *args]
    return subprocess.run(command, check=False, cwd=ROOT, capture_output=True, text=True, env={**os.environ, **(env or {})})


# --- the Ragas scorer alone ------------------------------------------------------------------


async def _scores(llm_server, embedder, model: str, question: str, answer: str, contexts, reference, **overrides):
    scorer = RagasScorer(_llm(llm_server, model, **overrides), embedder, attempts=ATTEMPTS, relevancy_questions=3)
    try:
        return await scorer.score(question, answer, contexts, reference)
    finally:
        await scorer.aclose()


async def test_each_metric_is_computed_from_the_judges_verdicts(llm_server, embedder):
    question = "Q: how often is a failed job retried?"
    answer = "A failed job is retried up to max_retries times [1]. Orbit encrypts every job with quantum keys [2]."
    reference = "A failed job is retried up to max_retries times (default 3). Jobs are written in Haskell."
    scores = await _scores(llm_server, embedder, "ragas", question, answer, [INSTALL_TEXT, RETRIES_TEXT], reference)

    faithfulness = scores.metrics["faithfulness"]
    assert faithfulness.score == 0.5 and faithfulness.detail == {"claims": 2, "supported": 1}
    assert faithfulness.attempts == 2  # the claims, then their verdicts
    # Only the second context is useful: precision@2 = 1/2.
    assert scores.metrics["context_precision"].score == 0.5
    assert scores.metrics["context_precision"].detail == {"contexts": 2, "useful": 1}
    assert scores.metrics["context_recall"].score == 0.5  # Haskell is nowhere in the contexts

    relevancy = scores.metrics["answer_relevancy"]
    asked = relevancy_questions(answer, 3)
    assert relevancy.detail == {"questions": asked, "noncommittal": False}
    vectors = embedder.embed([question, *asked])
    expected = sum(cosine_similarity(vectors[0], v) for v in vectors[1:]) / 3
    assert relevancy.score == pytest.approx(expected) and 0 < relevancy.score < 1

    sent = llm_server.requests_about("Orbit encrypts every job")
    assert sent and all(r["temperature"] == 0 for r in sent)


async def test_a_noncommittal_answer_without_a_reference_gets_the_answer_metrics_only(llm_server, embedder):
    scores = await _scores(llm_server, embedder, "ragas", "Q: TLS?", "The docs do not say how to configure TLS.",
                           [RETRIES_TEXT], None)
    assert set(scores.metrics) == {"faithfulness", "answer_relevancy"}
    assert scores.values["answer_relevancy"] == 0.0 and scores.metrics["answer_relevancy"].detail["noncommittal"]
    assert scores.values["faithfulness"] == 0.0  # its one claim is not in the context


async def test_malformed_replies_are_asked_again_then_left_unscored_with_the_reason(llm_server, embedder):
    once = await _scores(llm_server, embedder, "ragas-garbled-once", "Q: garbled once?", "Retries happen.",
                         [RETRIES_TEXT], "A failed job is retried.")
    assert all(m.error is None for m in once.metrics.values()), once
    assert once.metrics["answer_relevancy"].attempts == 2 and once.metrics["faithfulness"].attempts == 4

    never = await _scores(llm_server, embedder, "ragas-garbled", "Q: always garbled?", "Retries happen.",
                          [RETRIES_TEXT], "A failed job is retried.")
    assert set(never.metrics) == set(RAGAS_METRICS) and all(v is None for v in never.values.values())
    assert all("no JSON" in m.error and m.attempts == ATTEMPTS for m in never.metrics.values())

    down = await _scores(llm_server, embedder, "always-500", "Q: judge down?", "Retries happen.", [RETRIES_TEXT],
                         None, max_retries=0)
    assert all(m.score is None and "the judge failed: HTTP 500" in m.error for m in down.metrics.values())


# --- Ragas metrics in an eval run --------------------------------------------------------------


async def test_an_eval_run_grades_every_answer_and_a_new_run_grades_only_what_is_missing(orbit, llm_server, embedder):
    settings, work = orbit
    eval_set, references = open_eval_set(work / "eval.jsonl"), load_references(work / "references.json")
    out = work / "ragas-run"
    scorer = RagasScorer(_llm(llm_server, "ragas"), embedder, ATTEMPTS, settings.evaluation.relevancy_questions)

    def graded() -> int:
        return sum(r["model"] == "ragas" for r in llm_server.requests)

    try:
        before = graded()
        first = await run_eval(settings, eval_set, references, out, 2, llm="extractive", ragas=scorer)
        asked = graded() - before
        second = await run_eval(settings, eval_set, references, out, 2, llm="extractive", ragas=scorer)
        assert graded() - before == asked  # nothing graded again

        lines = [json.loads(line) for line in (out / RAGAS_FILE).read_text().splitlines()]
        line = next(x for x in lines if x["question"] == RETRIES)
        line["metrics"]["context_recall"] = {"score": None, "attempts": 3, "error": "no JSON", "detail": {}}
        (out / RAGAS_FILE).write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"key": "cut off')
        third = await run_eval(settings, eval_set, references, out, 2, llm="extractive", ragas=scorer)
    finally:
        await scorer.aclose()

    assert graded() - before == asked + 1  # only the retries question's context recall, asked again
    rows = {r["question"]: r for r in json.loads((out / EVALUATION_FILE).read_text())["rows"]}
    answered = [r for r in rows.values() if not r.get("error")]
    assert len(answered) == 4 and not any(name in rows[QUESTIONS[4]["question"]]["scores"] for name in RAGAS_METRICS)
    # Two claims asked for plus faithfulness verdicts and relevancy per answer, two context metrics per reference.
    assert asked == 3 * len(answered) + 2 * sum(r["question"] in references for r in answered)
    for row in answered:
        wanted = RAGAS_METRICS if row["question"] in references else ("faithfulness", "answer_relevancy")
        assert [m for m in RAGAS_METRICS if m in row["scores"]] == list(wanted)
        # Extractive answers quote their contexts: every claim is supported.
        assert row["scores"]["faithfulness"] == 1.0 and row["ragas"]["faithfulness"]["detail"]["supported"] > 0
        assert 0 < row["scores"]["answer_relevancy"] <= 1
    retries, reference = rows[RETRIES], references[RETRIES]
    useful = [supported(context, reference) for context in retries["contexts"]]
    assert useful[0] and retries["scores"]["context_precision"] == pytest.approx(average_precision(useful))
    assert retries["scores"]["context_recall"] == 1.0 and retries["ragas"]["context_recall"]["attempts"] == 1

    every = third.aggregates["all"]
    assert every["faithfulness"] == 1.0 and every["ragas_unscored"] == 0
    assert every["answer_relevancy"] == pytest.approx(sum(r["scores"]["answer_relevancy"] for r in answered) / 4)
    assert first.aggregates == second.aggregates == third.aggregates


def test_the_cli_grades_with_ragas_and_refuses_ragas_without_a_judge(orbit, llm_server, tmp_path):
    _, work = orbit
    require((work / "ragas-run" / RAGAS_FILE).exists(), "needs the run of the test above (run the whole module)")
    def ragas_requests() -> int:  # evaluation.judge also grades quality_score: those requests are not counted
        return sum(r["model"] == "ragas" and r["messages"][0]["content"] != JUDGE_SYSTEM_PROMPT
                   for r in llm_server.requests)

    before = ragas_requests()
    result = _docent(work, "run", "--eval", str(work / "eval.jsonl"), "--references", str(work / "references.json"),
                     "--out", str(work / "ragas-run"), "--llm", "extractive", "--limit", "4", "--ragas", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["asked"] == 0  # all four answered and graded (by evaluation.judge) before
    assert ragas_requests() == before
    every = report["aggregates"]["all"]
    assert every["questions"] == 4 and every["faithfulness"] == 1.0 and every["ragas_unscored"] == 0

    bare = subprocess.run([sys.executable, "-m", "cli", "eval", "run", "--eval", str(tmp_path / "eval.jsonl"),
                           "--ragas"], check=False, cwd=ROOT, capture_output=True, text=True)
    assert bare.returncode == 2 and "--ragas needs a judge LLM" in bare.stderr and "Traceback" not in bare.stderr


# --- reference answers ----------------------------------------------------------------------------


def _eval_set(path: Path, questions: list[dict]) -> EvalSet:
    path.write_text("".join(json.dumps(q) + "\n" for q in questions))
    return open_eval_set(path)


async def test_references_come_from_the_gold_section_else_its_page_else_nothing(orbit, llm_server, tmp_path):
    settings, _ = orbit
    questions = [
        {"question": "R: how are failed jobs retried?", "source": RETRIES_SOURCE},
        {"question": "R: what does the configuration page cover?", "source": NO_SUCH_ANCHOR},
        {"question": "R: how do I configure TLS?", "source": MISSING_PAGE},
    ]
    eval_set, out = _eval_set(tmp_path / "eval.jsonl", questions), tmp_path / "references.json"
    report = await generate_references(settings, eval_set, _llm(llm_server, "reference"), out, concurrency=2)

    section, page, missing = report.rows
    assert (section["context"], page["context"], missing["context"]) == ("section", "page", None)
    assert section["context_found"] and page["context_found"] and not missing["context_found"]
    assert "max_retries" in section["answer"] and section["llm"] == "reference"
    assert missing["answer"] == "" and not llm_server.requests_about(questions[2]["question"])
    section_context = llm_server.requests_about(questions[0]["question"])[0]["messages"][-1]["content"]
    page_context = llm_server.requests_about(questions[1]["question"])[0]["messages"][-1]["content"]
    assert "backoff_seconds" in section_context and "CPU cores" not in section_context
    assert "backoff_seconds" in page_context and "CPU cores" in page_context
    assert (report.asked, report.answered, report.without_context, report.failed) == (2, 2, 1, 0)
    assert json.loads(out.read_text()) == report.rows
    assert set(load_references(out)) == {questions[0]["question"], questions[1]["question"]}

    again = await generate_references(settings, eval_set, _llm(llm_server, "reference"), out, concurrency=2)
    assert again.asked == 0 and again.rows == report.rows

    hand_made = tmp_path / "hand-made.json"
    hand_made.write_text(json.dumps([{"question": questions[0]["question"], "answer": "Mine."}]))
    with pytest.raises(EvalSetError, match="not a row written by"):
        await generate_references(settings, eval_set, _llm(llm_server, "reference"), hand_made, concurrency=2)
    assert json.loads(hand_made.read_text())[0]["answer"] == "Mine."


async def test_a_failed_llm_call_is_recorded_and_asked_again_by_the_next_run(orbit, llm_server, tmp_path):
    settings, _ = orbit
    questions = [{"question": "F: how are failed jobs retried?", "source": RETRIES_SOURCE},
                 {"question": "F: what about the worker count?", "source": NO_SUCH_ANCHOR}]
    eval_set, out = _eval_set(tmp_path / "eval.jsonl", questions), tmp_path / "references.json"
    down = await generate_references(settings, eval_set, _llm(llm_server, "always-500", max_retries=0), out, 1,
                                     limit=1)
    assert len(down.rows) == 1 and down.failed == 1 and "HTTP 500" in down.rows[0]["error"]
    assert down.rows[0]["answer"] == "" and load_references(out) == {}

    healed = await generate_references(settings, eval_set, _llm(llm_server, "reference"), out, 1)
    assert (healed.asked, healed.answered, healed.failed) == (2, 2, 0)


async def test_the_gold_text_is_trimmed_to_the_llms_context(orbit, llm_server, tmp_path):
    settings, _ = orbit
    trimmed, whole = "T: everything about configuration?", "T: everything about configuration, please?"
    questions = [{"question": trimmed, "source": NO_SUCH_ANCHOR}]
    small = _llm(llm_server, "reference", context_length=200, max_tokens=60)
    await generate_references(settings, _eval_set(tmp_path / "a.jsonl", questions), small, tmp_path / "a.json", 1)
    questions = [{"question": whole, "source": NO_SUCH_ANCHOR}]
    await generate_references(settings, _eval_set(tmp_path / "b.jsonl", questions), _llm(llm_server, "reference"),
                              tmp_path / "b.json", 1)

    def context(question: str) -> str:
        return llm_server.requests_about(question)[0]["messages"][-1]["content"].split("Context:\n", 1)[1]

    tokenizer = load_tokenizer(None)
    budget = 200 - 60 - tokenizer.count(REFERENCE_PROMPT) - tokenizer.count(trimmed) - PROMPT_MARGIN_TOKENS
    assert 0 < tokenizer.count(context(trimmed)) <= budget < tokenizer.count(context(whole))
    assert context(whole).startswith(context(trimmed))


def test_the_references_cli_writes_json_and_names_an_unknown_llm(orbit, tmp_path):
    _, work = orbit
    out = tmp_path / "refs.json"
    result = _docent(work, "references", "--eval", str(work / "eval.jsonl"), "--llm", "reference", "--out", str(out),
                     "--limit", "2", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["questions"], summary["answered"], summary["failed"]) == (2, 2, 0)
    assert [r["question"] for r in json.loads(out.read_text())] == [q["question"] for q in QUESTIONS[:2]]

    unknown = _docent(work, "references", "--eval", str(work / "eval.jsonl"), "--llm", "nope")
    assert unknown.returncode == 2 and "unknown LLM 'nope'" in unknown.stderr and "golden-garbled" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    bad_index = _docent(work, "references", "--eval", str(work / "eval.jsonl"), "--llm", "reference",
                        "--index", "no-such-index")
    assert bad_index.returncode == 2 and "no index named 'no-such-index'" in bad_index.stderr


# --- golden sets ------------------------------------------------------------------------------------


def test_pairs_without_json_question_or_answer_are_dropped_with_the_reason():
    assert parse_pair("s", 'Sure: {"question": " How  do I retry? ", "answer": "Set max_retries."}') == Candidate(
        "s", "How do I retry?", "Set max_retries.")
    assert parse_pair("s", "No idea.").dropped == "no JSON"
    assert parse_pair("s", '{"answer": "x"}').dropped == "no question"
    assert parse_pair("s", '{"question": "   ", "answer": "x"}').dropped == "no question"
    assert parse_pair("s", '{"question": "How?", "answer": ""}').dropped == "empty answer"
    assert parse_pair("s", '{"question": "How do I retry", "answer": "x"}').dropped is None  # no "?" is fine


def test_duplicates_are_exact_after_normalising_or_similar_by_token_jaccard():
    questions = ["How do I retry a job?", "how do I RETRY a job", "How do I retry a failed job?",
                 "How do I install Orbit?", "What is Orbit?"]
    kept, duplicates = deduplicate([Candidate("s", q, "a") for q in questions], similarity=0.8)
    # Jaccard of the third with the first: 6 shared words of 7.
    assert [c.question for c in kept] == ["How do I retry a job?", "How do I install Orbit?", "What is Orbit?"]
    assert duplicates == 2
    kept, duplicates = deduplicate([Candidate("s", q, "a") for q in questions], similarity=0.9)
    assert duplicates == 1


def test_the_sample_is_seeded_and_skips_short_sections():
    from docent.sections import StoredSection

    sections = [StoredSection(f"s{i}", "P", f"T{i}", "x" * (MIN_CHARS if i % 3 else 10)) for i in range(30)]
    first = sample_sections(sections, 5, seed=1, min_chars=MIN_CHARS)
    assert first == sample_sections(sections, 5, seed=1, min_chars=MIN_CHARS) and len(first) == 5
    assert all(len(s.text) >= MIN_CHARS for s in first)
    everything = sample_sections(sections, 100, seed=2, min_chars=MIN_CHARS)
    assert {s.source for s in everything} == {f"s{i}" for i in range(30) if i % 3}
    assert any(sample_sections(sections, 5, seed=s, min_chars=MIN_CHARS) != first for s in range(2, 6))


async def test_golden_pairs_are_generated_in_ray_tasks_with_drops_and_duplicates_counted(orbit, llm_server, tmp_path):
    settings, _ = orbit
    out = tmp_path / "golden.jsonl"
    seen: list[tuple[int, int]] = []
    short = settings.model_copy(update={"evaluation": settings.evaluation.model_copy(
        update={"golden_min_section_chars": SHORT_SECTION_CHARS})})
    report = await generate_golden(short, _llm(llm_server, "golden-garbled"), out, 100, seed=3,
                                   progress=lambda *p: seen.append(p))

    sections = [s for s in await load_sections(settings) if len(s.text.strip()) >= SHORT_SECTION_CHARS]
    assert len(sections) < len(await load_sections(settings))  # some are too short
    kinds = {kind: sum(golden_kind(s.section_title) == kind for s in sections) for kind in GOLDEN_KINDS}
    assert kinds["ok"] and kinds["duplicate"] >= 2, kinds  # the fixture site exercises every path
    assert report.sections == report.sampled == len(sections)
    per_task = settings.evaluation.golden_sections_per_task
    assert report.tasks == math.ceil(len(sections) / per_task) > 1 and seen[-1] == (len(sections), len(sections))
    assert dict(report.dropped) == {k: n for k in ("no JSON", "no question", "empty answer") if (n := kinds[k])}
    assert report.duplicates == kinds["duplicate"] - 1
    assert len(report.kept) == kinds["ok"] + 1

    golden = open_eval_set(out)
    assert [q.question for q in golden.questions] == [r["question"] for r in report.kept]
    assert {q.source for q in golden.questions} <= {s.source for s in sections}
    assert load_references(out) == {r["question"]: r["answer"] for r in report.kept}
    workers = {r["messages"][-1]["content"].split("Source: ", 1)[1].split("\n", 1)[0]
               for r in llm_server.requests if r["model"] == "golden-garbled"}
    assert workers == {s.source for s in sections}


def test_the_golden_cli_samples_with_a_seed_and_refuses_a_missing_llm(orbit, tmp_path):
    import ray

    settings, work = orbit
    out = tmp_path / "golden.jsonl"
    cluster = {"RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    result = _docent(work, "golden", "--sections", "6", "--seed", "5", "--min-chars", str(SHORT_SECTION_CHARS),
                     "--llm", "golden", "--out", str(out), "--json", env=cluster)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["sampled"], summary["kept"], summary["seed"], summary["tasks"]) == (6, 6, 5, 2)
    assert summary["dropped"] == {} and summary["duplicates"] == 0
    assert [q.question for q in open_eval_set(out).questions] == [
        json.loads(line)["question"] for line in out.read_text().splitlines()]
    assert all(q.question.startswith("What does the documentation say about") for q in open_eval_set(out).questions)

    bare = subprocess.run([sys.executable, "-m", "cli", "eval", "golden", "--index", settings.index_name],
                          check=False, cwd=ROOT, capture_output=True, text=True)
    assert bare.returncode == 2 and "no LLM configured" in bare.stderr and "Traceback" not in bare.stderr
