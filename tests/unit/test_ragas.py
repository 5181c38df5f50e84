"""Ragas-style metrics: parsing the judge's replies, and the maths of each score."""

from __future__ import annotations

import pytest

from evaluation.metrics import RAGAS_METRICS, aggregate
from evaluation.ragas import (
    QUESTIONS_PROMPT,
    MetricScore,
    RagasScores,
    UnparseableReply,
    average_precision,
    fraction,
    parse_relevancy,
    parse_texts,
    parse_verdicts,
    split_sentences,
)

# --- parsing -------------------------------------------------------------------------------


def test_json_is_found_in_a_fence_with_words_around_it():
    reply = 'Here you go:\n```json\n{"claims": ["Ray retries tasks.", "The default is 3."]}\n```\nAnything else?'
    assert parse_texts(reply, "claims") == ["Ray retries tasks.", "The default is 3."]


def test_json_is_found_bare_or_after_other_braces():
    assert parse_texts('{"claims": ["A."]}', "claims") == ["A."]
    assert parse_texts('I use {braces} a lot. {"note": 1} {"claims": [" B. ", ""]}', "claims") == ["B."]
    assert parse_texts('["only", "a list"]', "claims") == ["only", "a list"]  # a bare array is the list asked for
    assert parse_texts('{"claims": [{"claim": "C."}, {"statement": "D."}]}', "claims") == ["C.", "D."]


@pytest.mark.parametrize("reply", ["", "No claims here.", "{not json}", '{"claim": "singular key"}',
                                   '```json\n{"claims": ["cut off\n```'])
def test_a_reply_without_the_json_asked_for_is_refused_with_the_reason(reply):
    with pytest.raises(UnparseableReply, match="no JSON with 'claims'"):
        parse_texts(reply, "claims")


def test_an_empty_or_wrongly_typed_list_is_refused_unless_allowed():
    with pytest.raises(UnparseableReply, match="no claims"):
        parse_texts('{"claims": []}', "claims")
    assert parse_texts('{"claims": []}', "claims", allow_empty=True) == []
    with pytest.raises(UnparseableReply, match="not a list"):
        parse_texts('{"claims": "A. B."}', "claims")
    with pytest.raises(UnparseableReply, match="not text"):
        parse_texts('{"claims": [3]}', "claims")


def test_verdicts_in_every_accepted_form():
    assert parse_verdicts('{"verdicts": [true, false, true]}', 3) == [True, False, True]
    assert parse_verdicts('Verdicts: {"verdicts": [1, 0]}', 2) == [True, False]
    assert parse_verdicts('{"verdicts": ["Yes", "no", "supported", "not useful"]}', 4) == [True, False, True, False]
    objects = '{"verdicts": [{"passage": 1, "useful": "yes"}, {"passage": 2, "verdict": 0}]}'
    assert parse_verdicts(objects, 2) == [True, False]
    assert parse_verdicts("```\n[false, true]\n```", 2) == [False, True]


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ('{"verdicts": [true, false]}', "2 verdicts for 3 items"),
        ('{"verdicts": [true, 2, false]}', "verdict 2 is neither"),
        ('{"verdicts": [true, "maybe", false]}', "'maybe' is neither"),
        ('{"verdicts": [true, null, false]}', "None is neither"),
        ('{"verdicts": [true, {"passage": 2}, false]}', "no verdict in"),
        ('{"verdicts": "all true"}', "not a list"),
        ("They all look supported to me.", "no JSON"),
    ],
)
def test_verdicts_out_of_range_missing_or_miscounted_are_refused(reply, reason):
    with pytest.raises(UnparseableReply, match=reason):
        parse_verdicts(reply, 3)


def test_relevancy_questions_are_capped_and_noncommittal_read_when_present():
    reply = '{"questions": ["Q1?", "Q2?", "Q3?", "Q4?"], "noncommittal": false}'
    assert parse_relevancy(reply, 3) == (["Q1?", "Q2?", "Q3?"], False)
    assert parse_relevancy('{"questions": ["Q1?"], "noncommittal": "yes"}', 3) == (["Q1?"], True)
    assert parse_relevancy('{"questions": ["Q1?"]}', 3) == (["Q1?"], False)  # missing: committal
    assert parse_relevancy('{"questions": ["Q1?"], "noncommittal": "perhaps"}', 3) == (["Q1?"], False)
    with pytest.raises(UnparseableReply):
        parse_relevancy('{"noncommittal": true}', 3)


def test_the_relevancy_prompt_asks_for_the_number_of_questions_wanted():
    prompt = QUESTIONS_PROMPT.format(n=4)
    assert "write 4 different questions" in prompt and '{"questions": [' in prompt


# --- maths ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("useful", "expected"),
    [
        ([True], 1.0),
        ([True, True, False], 1.0),
        ([False, True], 0.5),  # precision@2 = 1/2
        ([True, False, True], (1 / 1 + 2 / 3) / 2),
        ([False, True, False, True], (1 / 2 + 2 / 4) / 2),
        ([False, False, False], 0.0),
        ([], 0.0),
    ],
)
def test_context_precision_is_the_average_precision_over_the_useful_contexts(useful, expected):
    assert average_precision(useful) == pytest.approx(expected)


def test_faithfulness_and_recall_are_the_share_of_true_verdicts():
    assert fraction([True, False, True, True]) == 0.75
    assert fraction([False]) == 0.0
    assert fraction([]) == 0.0


def test_reference_sentences_without_citations():
    reference = "A failed job is retried up to 3 times [1]. Set `max_retries: 0` to disable it! Is that all? yes [2, 3]."
    assert split_sentences(reference) == [
        "A failed job is retried up to 3 times.", "Set `max_retries: 0` to disable it!", "Is that all? yes.",
    ]
    assert split_sentences("Call ray.init() first. 2 workers start.") == ["Call ray.init() first.", "2 workers start."]
    assert split_sentences("   ") == []


def test_scores_round_trip_through_json_keeping_unscored_ones_apart():
    scores = RagasScores({
        "faithfulness": MetricScore(0.5, 2, detail={"claims": 2, "supported": 1}),
        "context_recall": MetricScore(None, 3, "no JSON (after 3 attempts)"),
    })
    again = RagasScores.from_json(scores.to_json())
    assert again == scores
    assert again.values == {"faithfulness": 0.5, "context_recall": None}
    assert set(again.scored) == {"faithfulness"}


def _row(source: str, **scores) -> dict:
    base = {"hit": True, "reciprocal_rank": 1.0, "ndcg": 1.0, "recall@1": 1.0, "recall@3": 1.0, "recall@5": 1.0,
            "recall@10": 1.0, "recall@all": 1.0}
    return {"source": source, "scores": base | scores, "timings_ms": {"total": 10.0}, "cost": 0.0}


def test_the_summary_averages_scored_rows_only_and_counts_rows_left_unscored():
    rows = [
        _row("https://d/a.html", faithfulness=1.0, answer_relevancy=0.8, context_precision=0.5, context_recall=1.0),
        _row("https://d/b.html", faithfulness=0.5, answer_relevancy=None),  # no reference; relevancy unscored
        _row("https://d/c.html", faithfulness=None, answer_relevancy=0.6, context_precision=0.0, context_recall=None),
        _row("https://d/gone.html"),  # failed or not graded: no Ragas scores at all
    ]
    summary = aggregate(rows, {"https://d/a.html", "https://d/b.html"})
    every, in_corpus = summary["all"], summary["in_corpus"]
    assert every["faithfulness"] == pytest.approx(0.75)
    assert every["answer_relevancy"] == pytest.approx(0.7)
    assert every["context_precision"] == pytest.approx(0.25)
    assert every["context_recall"] == pytest.approx(1.0)
    assert every["ragas_unscored"] == 2
    assert in_corpus["context_precision"] == pytest.approx(0.5) and in_corpus["ragas_unscored"] == 1
    nothing = aggregate([_row("https://d/a.html")], None)["all"]
    assert all(nothing[name] is None for name in RAGAS_METRICS) and nothing["ragas_unscored"] == 0
