"""The router's model: p(an open-source LLM answers a question well), and the decision it makes.

CountVectorizer + logistic regression on the question, as the reference trained it on
its hand-labelled routing dataset (training is in `training/router.py`); every decision
carries its probability.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from docent.linear_text import LinearTextModel

ARTIFACT_KIND = "router"
OSS, STRONG = 1, 0


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
    def load(cls, path: Path, threshold: float = 0.5) -> Router:
        return cls(LinearTextModel.load(path, ARTIFACT_KIND), threshold)

    def decide(self, questions: list[str]) -> list[RouteDecision]:
        probabilities = self.model.predict_proba(questions)[:, self.model.classes.index(OSS)]
        return [RouteDecision(bool(p >= self.threshold), float(p)) for p in probabilities]
