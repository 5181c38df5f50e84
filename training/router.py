"""Training and scoring the router on `{question, target}` rows (target 1: open-source LLM)."""

from __future__ import annotations

import json
from pathlib import Path

from docent.errors import UsageError
from docent.linear_text import LinearTextModel
from docent.routing import ARTIFACT_KIND, OSS, STRONG, Router

MIN_ROWS_PER_LABEL = 2


class RoutingDataError(UsageError, ValueError):
    pass


def load_routing_rows(path: Path) -> list[tuple[str, int]]:
    """`{question, target}` JSON lines, target 1 (open-source) or 0 (strong)."""
    if not path.is_file():
        raise RoutingDataError(f"routing data not found: {path}")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            target = int(row["target"])
            question = str(row["question"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise RoutingDataError(f"{path}:{number}: expected {{question, target}} ({exc})") from exc
        if target not in (OSS, STRONG):
            raise RoutingDataError(f"{path}:{number}: target must be 0 or 1, not {target}")
        rows.append((question, target))
    if len({t for _, t in rows}) < 2:
        raise RoutingDataError(f"{path}: needs questions of both targets")
    return rows


def _pipeline():
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    return make_pipeline(CountVectorizer(), LogisticRegression(max_iter=1000))


def train_router(rows: list[tuple[str, int]], folds: int = 5, seed: int = 1234) -> tuple[Router, dict[str, float]]:
    """Cross-validated precision/recall/f1 (positive class: open-source), then a fit on all rows."""
    from sklearn.model_selection import StratifiedKFold, cross_validate

    questions, targets = [q for q, _ in rows], [t for _, t in rows]
    smallest = min(targets.count(OSS), targets.count(STRONG))
    if smallest < MIN_ROWS_PER_LABEL:
        raise RoutingDataError(
            f"need at least {MIN_ROWS_PER_LABEL} questions of each label to train and cross-validate; "
            f"got {targets.count(OSS)} open-source and {targets.count(STRONG)} strong"
        )
    folds = min(folds, smallest)  # a small label set gets fewer folds rather than none
    splits = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    scores = cross_validate(_pipeline(), questions, targets, cv=splits, scoring=("precision", "recall", "f1"))
    metrics = {name: float(scores[f"test_{name}"].mean()) for name in ("precision", "recall", "f1")}
    metrics["folds"] = folds
    pipeline = _pipeline().fit(questions, targets)
    vectorizer, classifier = pipeline.steps[0][1], pipeline.steps[1][1]
    model = LinearTextModel.from_sklearn(ARTIFACT_KIND, vectorizer, classifier, {"seed": seed, "cv": metrics, "rows": len(rows)})
    return Router(model), metrics


def evaluate_router(router: Router, rows: list[tuple[str, int]]) -> dict[str, float]:
    from sklearn.metrics import precision_recall_fscore_support

    decisions = router.decide([q for q, _ in rows])
    predicted = [OSS if d.use_oss else STRONG for d in decisions]
    precision, recall, f1, _ = precision_recall_fscore_support([t for _, t in rows], predicted, average="binary", zero_division=0)
    return {
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "rows": len(rows),
        "routed_to_oss": sum(predicted) / len(predicted),
    }
