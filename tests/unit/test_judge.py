"""Parsing an LLM judge's reply into a 1–5 score and its reasoning."""

from __future__ import annotations

import pytest

from evaluation.judge import MAX_SCORE, MIN_SCORE, UnparseableVerdict, judge_messages, parse_verdict


def test_a_json_verdict_in_a_fence_with_words_around_it():
    reply = 'Sure, here it is:\n```json\n{"score": 4, "reasoning": "Close to the reference."}\n```\nCheers.'
    assert parse_verdict(reply) == (4, "Close to the reference.")


def test_a_bare_json_verdict():
    assert parse_verdict('{"score": 5, "reasoning": "Exact."}') == (5, "Exact.")
    assert parse_verdict('{"reasoning": "Fine.", "score": "2"}') == (2, "Fine.")


def test_a_score_line_when_there_is_no_json():
    reply = "Score: 3\nReasoning: It misses the default delay."
    assert parse_verdict(reply) == (3, "It misses the default delay.")
    assert parse_verdict("**score**: 3\nThe answer is partial.")[0] == 3


@pytest.mark.parametrize("reply", ['{"score": 9, "reasoning": "x"}', "score: 0", '{"score": 3.5}'])
def test_a_score_out_of_range_or_not_whole_is_refused(reply):
    with pytest.raises(UnparseableVerdict):
        parse_verdict(reply)


@pytest.mark.parametrize("reply", ["", "A fine answer overall.", "{not json}", '{"grade": 4}'])
def test_garbage_is_refused_with_the_reason(reply):
    with pytest.raises(UnparseableVerdict, match="no score"):
        parse_verdict(reply)


def test_the_prompt_holds_the_query_the_reference_and_the_answer():
    system, user = judge_messages("How to retry?", "Set max_retries.", "Use retries.")
    assert f"{MIN_SCORE} to {MAX_SCORE}" in system["content"] and '"reasoning"' in system["content"]
    assert all(text in user["content"] for text in ("How to retry?", "Set max_retries.", "Use retries."))
