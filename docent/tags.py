"""The reference's tag reranker: predict a question's docs area, move that area's chunks first.

A tag is the first path segment of a page under the docs' base URL (`…/serve/…` → serve);
areas outside `TAGS` are "other". Text is preprocessed as the reference did: punctuation
separated, `_ - # .` turned into spaces, camelCase split, then WordPiece (the
bert-base-uncased vocabulary, which all-MiniLM-L6-v2 ships).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from docent.linear_text import LinearTextModel

TAGS = ("rllib", "tune", "train", "cluster", "ray-core", "data", "serve", "ray-observability")
OTHER = "other"
ARTIFACT_KIND = "reranker"

# The reference's minimum-functionality tests (ray-assistant-guide.md, "Testing").
SANITY_CHECKS = (
    ("How to train a train an LLM using DeepSpeed?", "train"),
    ("How does autoscaling work in a Ray Serve application?", "serve"),
    ("How to find the best checkpoint from the trial directory?", "tune"),
    ("How do I avoid my dataset shuffling during a ray.data.map_batches?", "data"),
    ("how to push a custom module to ray which is using by Actor?", "ray-core"),
    ("How would you compare Spark, Ray, Dask?", "other"),
    ("How do I enable Ray debug logs?", "ray-observability"),
    ("How do I set a maximum episode length when training with Rllib", "rllib"),
)

_PUNCTUATION = re.compile(r"(?<=\w)([?.,!])(?!\s)")
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")


def tag_of(source: str, base_url: str) -> str:
    if not source.startswith(base_url):
        return OTHER
    first = source[len(base_url):].lstrip("/").split("/", 1)[0]
    return first if first in TAGS else OTHER


def training_text(question: str, source: str) -> str:
    """The reference trained on the page and section name followed by the question."""
    return f"{source.rsplit('/', 1)[-1]} {question}"


@lru_cache(maxsize=1)
def _wordpiece():
    from transformers import AutoTokenizer

    from docent.embedding.model import resolve_model_path

    return AutoTokenizer.from_pretrained(resolve_model_path("all-MiniLM-L6-v2"))


def preprocess(text: str) -> str:
    text = _PUNCTUATION.sub(r" \1", text)
    for old, new in (("_", " "), ("-", " "), ("#", " "), (".html", ""), (".", " ")):
        text = text.replace(old, new)
    text = " ".join(_CAMEL.sub(r"\1 \2", word) for word in text.split())
    return " ".join(_wordpiece().tokenize(text))


@dataclass
class TagPrediction:
    tag: str
    probability: float

    def confident(self, threshold: float) -> str:
        return self.tag if self.probability >= threshold else OTHER


class TagClassifier:
    def __init__(self, model: LinearTextModel):
        self.model = model

    @classmethod
    def load(cls, path: Path) -> TagClassifier:
        return cls(LinearTextModel.load(path, ARTIFACT_KIND))

    def predict(self, questions: Sequence[str]) -> list[TagPrediction]:
        probabilities = self.model.predict_proba([preprocess(q) for q in questions])
        best = probabilities.argmax(axis=1)
        return [TagPrediction(str(self.model.classes[i]), float(row[i])) for i, row in zip(best, probabilities)]
