"""Offline eval metrics on hand-made cases."""

from __future__ import annotations

import math

import pytest

from docent.types import page_of
from evaluation.metrics import RECALL_METRICS, aggregate, cosine_similarity, has_gold, retrieval_metrics, token_f1
from evaluation.retrieval import retrieval_score

DOCS = "https://docs.example/"
GOLD = f"{DOCS}serve/scaling.html#autoscaling"


def _page(name: str, anchor: str = "top") -> str:
    return f"{DOCS}{name}.html#{anchor}"


def test_a_hit_is_the_gold_page_whatever_the_anchor():
    found = retrieval_metrics(GOLD, [_page("data/intro"), f"{DOCS}serve/scaling.html#other-section"])
    missed = retrieval_metrics(GOLD, [_page("data/intro"), _page("serve/index")])
    assert found["hit"] is True and missed["hit"] is False
    # exactly the reference's retrieval_score over the same questions
    assert retrieval_score([GOLD, GOLD], [[f"{DOCS}serve/scaling.html"], [_page("x")]]) == 0.5


@pytest.mark.parametrize(
    ("rank", "reciprocal_rank", "ndcg"),
    [(1, 1.0, 1.0), (2, 0.5, 1 / math.log2(3)), (3, 1 / 3, 0.5), (None, 0.0, 0.0)],
)
def test_reciprocal_rank_and_ndcg_follow_the_first_gold_chunk(rank, reciprocal_rank, ndcg):
    sources = [_page(f"other-{i}") for i in range(4)]
    if rank:
        sources[rank - 1] = GOLD
    metrics = retrieval_metrics(GOLD, sources)
    assert metrics["reciprocal_rank"] == pytest.approx(reciprocal_rank)
    assert metrics["ndcg"] == pytest.approx(ndcg)


def test_a_page_counts_once_so_ndcg_never_exceeds_one():
    metrics = retrieval_metrics(GOLD, [GOLD, f"{DOCS}serve/scaling.html#second", _page("a")])
    assert metrics["ndcg"] == 1.0 and metrics["reciprocal_rank"] == 1.0


def test_recall_at_k_is_a_hit_within_the_top_k():
    sources = [_page(f"other-{i}") for i in range(12)]
    sources[3] = GOLD  # rank 4
    metrics = retrieval_metrics(GOLD, sources)
    assert [metrics[f"recall@{k}"] for k in (1, 3, 5, 10)] == [0.0, 0.0, 1.0, 1.0]
    assert metrics["recall@all"] == 1.0
    assert retrieval_metrics(GOLD, [])["recall@all"] == 0.0


def test_token_f1_ignores_case_punctuation_and_citations():
    assert token_f1("Use `ray.init()` [1].", "use ray init") == 1.0
    assert token_f1("Set num_replicas [2, 3]", "set num_replicas") == 1.0
    # 2 of 4 answer tokens shared with a 2-token reference: precision 0.5, recall 1
    assert token_f1("scale the deployment up", "scale deployment") == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert token_f1("nothing shared", "entirely different") == 0.0
    assert token_f1("", "") == 0.0


def test_cosine_similarity_normalises_the_vectors():
    assert cosine_similarity([3.0, 0.0], [1.0, 0.0]) == pytest.approx(1.0)
    assert cosine_similarity([1.0, 1.0], [1.0, -1.0]) == pytest.approx(0.0)
    assert cosine_similarity([0.0, 0.0], [1.0, 0.0]) == 0.0


def _row(source: str, retrieved: list[str], *, f1: float | None = None, error: str | None = None,
         total_ms: float = 100.0, cost: float = 0.01) -> dict:
    scores = retrieval_metrics(source, retrieved) if has_gold(source) else {}  # as the runner scores a row
    if f1 is not None:
        scores |= {"token_f1": f1, "answer_similarity": f1}
    row = {"source": source, "scores": scores, "timings_ms": {} if error else {"total": total_ms},
           "cost": 0.0 if error else cost}
    return row | ({"error": error} if error else {})


def test_aggregate_means_over_all_rows_and_over_the_in_corpus_ones():
    in_index, missing = _page("in-index"), _page("gone")
    rows = [
        _row(in_index, [in_index], f1=0.8, total_ms=100),  # hit at rank 1
        _row(in_index, [_page("x"), in_index], total_ms=300),  # hit at rank 2, no reference
        _row(missing, [_page("x")], f1=0.2, total_ms=200),  # the gold page is not in the index
        _row(in_index, [], f1=0.0, error="boom"),  # failed: zero scores, counted
    ]
    result = aggregate(rows, {page_of(in_index), page_of(_page("x"))})
    every, in_corpus = result["all"], result["in_corpus"]
    assert (every["questions"], every["answered"], every["errors"], every["with_reference"]) == (4, 3, 1, 3)
    assert every["retrieval_score"] == pytest.approx(2 / 4)
    assert every["mrr"] == pytest.approx((1 + 0.5) / 4)
    assert every["recall@1"] == pytest.approx(1 / 4)
    assert every["token_f1"] == pytest.approx((0.8 + 0.2 + 0.0) / 3)
    assert every["mean_latency_ms"] == pytest.approx(200)
    assert every["total_cost"] == pytest.approx(0.03)
    assert in_corpus["questions"] == 3 and in_corpus["retrieval_score"] == pytest.approx(2 / 3)
    assert in_corpus["token_f1"] == pytest.approx(0.8 / 2)
    assert aggregate(rows, None)["in_corpus"] is None


def test_aggregate_of_nothing_has_no_means():
    empty = aggregate([], set())
    assert empty["all"]["questions"] == 0 and empty["all"]["retrieval_score"] is None
    assert empty["in_corpus"]["token_f1"] is None


RETRIEVAL_MEANS = ("retrieval_score", *RECALL_METRICS, "mrr", "ndcg")


def test_questions_without_a_gold_source_are_left_out_of_the_retrieval_means_only():
    assert has_gold(GOLD) and not has_gold("") and not has_gold("  ") and not has_gold("#an-anchor")
    in_index = _page("in-index")
    rows = [
        _row(in_index, [in_index], f1=0.5),  # hit
        _row(in_index, [_page("x")]),  # miss
        _row("", [in_index], f1=0.25, total_ms=400),  # gold unknown (docent flywheel export): no retrieval scores
        _row("", [], error="boom"),
    ]
    result = aggregate(rows, {page_of(in_index), page_of(_page("x"))})
    every, in_corpus = result["all"], result["in_corpus"]
    assert (every["questions"], every["with_gold"], every["errors"], every["with_reference"]) == (4, 2, 1, 2)
    assert [every[name] for name in RETRIEVAL_MEANS] == [0.5] * len(RETRIEVAL_MEANS)  # over the 2 rows with gold
    assert every["token_f1"] == pytest.approx(0.375) and every["mean_latency_ms"] == pytest.approx(200)
    assert (in_corpus["questions"], in_corpus["with_gold"], in_corpus["retrieval_score"]) == (2, 2, 0.5)

    unknown = aggregate(rows[2:], set())
    assert unknown["all"]["with_gold"] == 0 and all(unknown["all"][name] is None for name in RETRIEVAL_MEANS)
    assert unknown["all"]["token_f1"] == 0.25 and unknown["in_corpus"]["questions"] == 0


def test_the_eval_table_counts_the_questions_with_gold_and_says_why_retrieval_is_blank():
    from rich.console import Console

    from cli.evaluate import _eval_table

    unknown = aggregate([_row("", [_page("x")], f1=0.25)], set())
    console = Console(record=True, width=160)
    console.print(_eval_table(unknown, "docs"))
    shown = console.export_text()
    cells = {parts[1].strip(): [c.strip() for c in parts[2:-1]]
             for parts in (line.split("│") for line in shown.splitlines()) if len(parts) == 5}
    assert cells["with gold source"] == ["0", "0"] and cells["questions"] == ["1", "0"]
    assert cells["retrieval_score"] == ["–", "–"] and cells["token F1"] == ["0.250", "–"]
    assert "1 question(s) without a gold source" in shown

    console = Console(record=True, width=160)
    console.print(_eval_table(aggregate([_row(GOLD, [GOLD])], None), "docs"))
    assert "without a gold source" not in console.export_text()
