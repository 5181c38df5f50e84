"""Offline metrics of one answered question, and their means over an eval run.

Retrieval is judged at page level, as the reference's retrieval_score is: a retrieved
chunk is relevant when its page (URL before `#`) is the gold source's page. Each
question has one gold page, so recall@k is a hit within the top k and the ideal DCG is 1.
A question without a gold source (an empty `source`, as `docent flywheel export` writes)
has no retrieval scores: the retrieval means are over the `with_gold` rows only.
Answers are compared with the reference answer without an LLM: token F1 here, and the
cosine of embeddings (computed by the runner, which has the model). With an LLM judge,
`quality_score` is the mean of its 1–5 scores over the rows it scored; `unscored` counts
the rows it judged but could not score. The Ragas-style metrics (faithfulness, answer
relevancy, context precision and recall) are averaged the same way; `ragas_unscored`
counts the rows with at least one of them left unscored.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from statistics import fmean
from typing import Any

import numpy as np

from docent.types import page_of
from evaluation.retrieval import retrieval_hit

RECALL_KS = (1, 3, 5, 10)  # plus recall@all, which is `hit`
RECALL_METRICS = (*(f"recall@{k}" for k in RECALL_KS), "recall@all")
ANSWER_METRICS = ("token_f1", "answer_similarity")
# Ragas-style metrics (evaluation/ragas.py), graded by the judge LLM; None: unscored.
RAGAS_METRICS = ("faithfulness", "answer_relevancy", "context_precision", "context_recall")

# Citations the generator writes, like [3] or [1, 2], are not words of the answer.
_CITATION = re.compile(r"\[\d+(?:\s*,\s*\d+)*\]")
_WORD = re.compile(r"\w+")


def has_gold(source: str) -> bool:
    """Whether an eval row names a gold page; an empty `source` says its gold is unknown."""
    return bool(page_of(source).strip())


def gold_rank(gold_source: str, retrieved_sources: Sequence[str]) -> int | None:
    """1-based rank of the first retrieved chunk on the gold page; None when none is."""
    gold = page_of(gold_source)
    return next((rank for rank, s in enumerate(retrieved_sources, start=1) if page_of(s) == gold), None)


def retrieval_metrics(gold_source: str, retrieved_sources: Sequence[str]) -> dict[str, float | bool]:
    """hit, recall@k, reciprocal rank and nDCG of one question's ranked sources."""
    rank = gold_rank(gold_source, retrieved_sources)
    metrics: dict[str, float | bool] = {"hit": retrieval_hit(gold_source, retrieved_sources)}
    for k in RECALL_KS:
        metrics[f"recall@{k}"] = float(rank is not None and rank <= k)
    metrics["recall@all"] = float(rank is not None)
    metrics["reciprocal_rank"] = 1.0 / rank if rank else 0.0
    # Binary relevance by page: only the gold page's first chunk gains (a page is relevant
    # once); the ideal ranking puts it first, so the ideal DCG is 1 / log2(2) = 1.
    metrics["ndcg"] = 1.0 / math.log2(rank + 1) if rank else 0.0
    return metrics


def answer_tokens(text: str) -> list[str]:
    """Lower-cased word tokens, citations removed."""
    return _WORD.findall(_CITATION.sub(" ", text.lower()))


def token_f1(answer: str, reference: str) -> float:
    """Harmonic mean of the shared-token precision and recall (0 when nothing is shared)."""
    answer_counts, reference_counts = Counter(answer_tokens(answer)), Counter(answer_tokens(reference))
    shared = sum((answer_counts & reference_counts).values())
    if not shared:
        return 0.0
    precision = shared / sum(answer_counts.values())
    recall = shared / sum(reference_counts.values())
    return 2 * precision * recall / (precision + recall)


def cosine_similarity(u: Sequence[float] | np.ndarray, v: Sequence[float] | np.ndarray) -> float:
    """Cosine of two vectors, normalised here; 0 when either is all zeros."""
    a, b = np.asarray(u, dtype=np.float64), np.asarray(v, dtype=np.float64)
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / norms if norms else 0.0


def aggregate(rows: Sequence[dict[str, Any]], in_corpus: set[str] | None) -> dict[str, dict[str, Any] | None]:
    """Means and counts over every row, and over the rows whose gold page is in `in_corpus` (None: unknown).

    A row is `{source, scores, error?, timings_ms, cost}`; a failed question's scores are
    zeros, so it counts against every mean rather than vanishing from it. Retrieval means are
    over the rows with retrieval scores (a gold source) only: None when no row has them.
    """
    subset = [r for r in rows if page_of(r["source"]) in in_corpus] if in_corpus is not None else None
    return {"all": _summary(rows), "in_corpus": _summary(subset) if subset is not None else None}


def _summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    answered = [r for r in rows if not r.get("error")]
    with_reference = [r for r in rows if "token_f1" in r["scores"]]
    with_gold = [r for r in rows if "hit" in r["scores"]]
    latencies = [r["timings_ms"]["total"] for r in answered if "total" in (r.get("timings_ms") or {})]
    summary: dict[str, Any] = {
        "questions": len(rows),
        "answered": len(answered),
        "errors": len(rows) - len(answered),
        "with_reference": len(with_reference),
        "with_gold": len(with_gold),
        "retrieval_score": _mean(r["scores"]["hit"] for r in with_gold),
    }
    summary.update({name: _mean(r["scores"][name] for r in with_gold) for name in RECALL_METRICS})
    summary["mrr"] = _mean(r["scores"]["reciprocal_rank"] for r in with_gold)
    summary["ndcg"] = _mean(r["scores"]["ndcg"] for r in with_gold)
    summary.update({name: _mean(r["scores"][name] for r in with_reference) for name in ANSWER_METRICS})
    judged = [r["scores"]["quality"] for r in rows if "quality" in r["scores"]]
    summary["quality_score"] = _mean(q for q in judged if q is not None)  # the LLM judge's 1–5, scored rows only
    summary["unscored"] = sum(q is None for q in judged)
    for name in RAGAS_METRICS:  # scored rows only
        summary[name] = _mean(r["scores"][name] for r in rows if r["scores"].get(name) is not None)
    summary["ragas_unscored"] = sum(any(n in r["scores"] and r["scores"][n] is None for n in RAGAS_METRICS) for r in rows)
    summary["mean_latency_ms"] = _mean(latencies)
    summary["total_cost"] = sum(r.get("cost") or 0.0 for r in answered)
    return summary


def _mean(values: Iterable[float | bool]) -> float | None:
    """The mean, or None (JSON null) when there is nothing to average."""
    values = [float(v) for v in values]
    return fmean(values) if values else None
