"""Routing a question to the open-source LLM (label 1) or the strong one (label 0).

CountVectorizer + logistic regression on the question, as the reference trained it on
its hand-labelled routing dataset; every decision carries its probability.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from docent.linear_text import LinearTextModel
from docent.types import EXTRACTIVE_LLM as EXTRACTIVE
from docent.types import Route, UnknownLLM

ARTIFACT_KIND = "router"
OSS, STRONG = 1, 0
MIN_ROWS_PER_LABEL = 2


class RoutingDataError(ValueError):
    pass


@dataclass
class RouteDecision:
    use_oss: bool
    probability_oss: float

    @property
    def reason(self) -> str:
        side = "open-source" if self.use_oss else "strong"
        return f"router: p(open-source answers well) = {self.probability_oss:.2f} → {side} LLM"


class Router:
    def __init__(self, model: LinearTextModel, threshold: float = 0.5):
        self.model, self.threshold = model, threshold

    @classmethod
    def load(cls, path: Path, threshold: float = 0.5) -> "Router":
        return cls(LinearTextModel.load(path, ARTIFACT_KIND), threshold)

    def decide(self, questions: list[str]) -> list[RouteDecision]:
        probabilities = self.model.predict_proba(questions)[:, self.model.classes.index(OSS)]
        return [RouteDecision(bool(p >= self.threshold), float(p)) for p in probabilities]


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


def choose_llm(
    decision: RouteDecision | None, llms: list[str], oss_llm: str | None, strong_llm: str | None, requested: str | None
) -> Route:
    """The LLM that should answer, and why: the request's choice, the router's, or the only one there is."""
    if requested:
        if requested != EXTRACTIVE and requested not in llms:
            raise UnknownLLM(requested, [*llms, EXTRACTIVE])
        return Route(llm=requested, reason="asked for by the request")
    if not llms:
        return Route(llm=EXTRACTIVE, reason="no LLM configured: sentences from the sources")
    if oss_llm and strong_llm:
        if decision is None:
            return Route(llm=strong_llm, reason="no router trained (docent train router): the strong LLM")
        chosen = oss_llm if decision.use_oss else strong_llm
        return Route(llm=chosen, probability_oss=decision.probability_oss, reason=decision.reason)
    chosen = oss_llm or strong_llm or llms[0]
    return Route(llm=chosen, reason="the only LLM configured" if len(llms) == 1 else "the configured LLM")
