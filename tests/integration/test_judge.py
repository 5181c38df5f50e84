"""The LLM judge against the real test server, alone and in `run_eval`."""

from __future__ import annotations

import json
from statistics import fmean

import pytest

from docent.settings import LLMSettings
from evaluation.judge import Judge
from evaluation.runner import EVALUATION_FILE, JUDGEMENTS_FILE, load_references, open_eval_set, run_eval
from tests.integration.test_eval_run import RETRIES, _docent, orbit  # noqa: F401 - the fixture, with its index
from tests.llm_server import JUDGE_SCORE

pytestmark = pytest.mark.integration

ATTEMPTS = 3
REFERENCE = "A failed job is retried up to max_retries times (default 3)."
ANSWER = "Jobs are retried three times by default [1]."


def _judge(llm_server, model: str, **overrides) -> Judge:
    settings = LLMSettings(name=f"judge-{model}", model=model, base_url=llm_server.base_url, **overrides)
    return Judge(settings, max_attempts=ATTEMPTS)


async def _verdict(llm_server, model: str, question: str, **overrides):
    judge = _judge(llm_server, model, **overrides)
    try:
        return await judge.score(question, REFERENCE, ANSWER)
    finally:
        await judge.aclose()


async def test_a_fenced_json_verdict_is_scored(llm_server):
    verdict = await _verdict(llm_server, "judge", "Q: fenced verdict?")
    assert (verdict.score, verdict.attempts, verdict.error) == (JUDGE_SCORE, 1, None)
    assert verdict.reasoning
    sent = llm_server.requests_about("Q: fenced verdict?")[0]
    assert sent["temperature"] == 0 and REFERENCE in sent["messages"][-1]["content"]


async def test_a_garbled_reply_is_asked_again(llm_server):
    verdict = await _verdict(llm_server, "judge-garbled-once", "Q: garbled once?")
    assert (verdict.score, verdict.attempts, verdict.error) == (JUDGE_SCORE, 2, None)


async def test_a_judge_that_never_answers_in_form_leaves_the_answer_unscored(llm_server):
    garbled = await _verdict(llm_server, "judge-garbled", "Q: always garbled?")
    assert garbled.score is None and garbled.attempts == ATTEMPTS and "no score" in garbled.error
    assert len(llm_server.requests_about("Q: always garbled?")) == ATTEMPTS

    out_of_range = await _verdict(llm_server, "judge-out-of-range", "Q: out of range?")
    assert out_of_range.score is None and out_of_range.attempts == ATTEMPTS and "outside 1–5" in out_of_range.error


async def test_a_failing_endpoint_leaves_the_answer_unscored_with_the_reason(llm_server):
    verdict = await _verdict(llm_server, "always-500", "Q: endpoint down?", max_retries=0)
    assert verdict.score is None and verdict.attempts == 1 and "HTTP 500" in verdict.error


async def test_an_eval_run_with_a_judge_scores_quality_and_does_not_judge_again(orbit, llm_server):  # noqa: F811
    settings, work = orbit
    eval_set, references = open_eval_set(work / "eval.jsonl"), load_references(work / "references.json")
    out = work / "judged"
    judge = _judge(llm_server, "judge-garbled-once")

    def judge_requests() -> int:
        return sum(r["model"] == "judge-garbled-once" for r in llm_server.requests)

    before = judge_requests()
    try:
        first = await run_eval(settings, eval_set, references, out, concurrency=2, limit=3, judge=judge)
        asked = judge_requests() - before
        second = await run_eval(settings, eval_set, references, out, concurrency=2, limit=3, judge=judge)
    finally:
        await judge.aclose()

    assert asked == 2 * 2  # two questions with a reference, each garbled once
    assert judge_requests() - before == asked  # the second run judged nothing
    rows = json.loads((out / EVALUATION_FILE).read_text())["rows"]
    judged = [r for r in rows if "quality" in r["scores"]]
    assert len(judged) == 2 and RETRIES in {r["question"] for r in judged}
    assert all(r["judge"]["attempts"] == 2 and r["judge"]["error"] is None and r["judge"]["reasoning"] for r in judged)
    assert "quality" not in next(r for r in rows if r["question"] not in references)["scores"]
    every = first.aggregates["all"]
    assert every["quality_score"] == pytest.approx(fmean(r["scores"]["quality"] for r in judged))
    assert every["unscored"] == 0 and first.aggregates["in_corpus"]["quality_score"] == JUDGE_SCORE
    assert second.aggregates == first.aggregates
    assert len((out / JUDGEMENTS_FILE).read_text().splitlines()) == 2


def test_the_cli_refuses_an_unknown_judge_naming_the_configured_llms(tmp_path):
    result = _docent("--eval", str(tmp_path / "eval.jsonl"), "--judge", "nope")
    assert result.returncode == 2 and "unknown judge 'nope'" in result.stderr and "Traceback" not in result.stderr
