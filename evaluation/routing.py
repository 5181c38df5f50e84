"""Routing labels from the system's own judgements: two evaluations of the same questions.

A question is labelled 1 (the open-source LLM will do) where that LLM's quality score is
within `tolerance` of the strong LLM's, else 0. Questions either judge left unscored, or
that only one evaluation asked, carry no label and are counted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from docent.routing import OSS, STRONG
from training.router import RoutingDataError


@dataclass(frozen=True)
class RoutingLabels:
    rows: list[tuple[str, int]]  # (question, target)
    unscored: int  # questions in both evaluations without a quality score in one of them
    unmatched: int  # questions in only one evaluation

    def to_jsonl(self) -> str:
        return "".join(json.dumps({"question": q, "target": t}) + "\n" for q, t in self.rows)


def quality_scores(path: Path) -> dict[str, float | None]:
    """question → quality score (None: unscored) from an `evaluation.json` written by `docent eval run --judge`."""
    if not path.is_file():
        raise RoutingDataError(f"evaluation not found: {path}")
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))["rows"]
        scores = {row["question"]: row["scores"].get("quality") for row in rows}
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
        raise RoutingDataError(f"{path} is not an evaluation.json of `docent eval run`") from None
    if all(score is None for score in scores.values()):
        raise RoutingDataError(f"{path} has no quality scores: evaluate with `docent eval run --judge LLM`")
    return scores


def labels_from_evaluations(oss: Path, strong: Path, tolerance: float) -> RoutingLabels:
    oss_scores, strong_scores = quality_scores(oss), quality_scores(strong)
    shared = [q for q in oss_scores if q in strong_scores]
    if not shared:
        raise RoutingDataError(f"{oss} and {strong} share no questions: evaluate the same eval set with each LLM")
    rows, unscored = [], 0
    for question in shared:
        ours, theirs = oss_scores[question], strong_scores[question]
        if ours is None or theirs is None:
            unscored += 1
            continue
        rows.append((question, OSS if ours >= theirs - tolerance else STRONG))
    unmatched = len(oss_scores) + len(strong_scores) - 2 * len(shared)
    return RoutingLabels(rows, unscored, unmatched)
