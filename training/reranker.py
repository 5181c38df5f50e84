"""Training the tag classifier on `{question, source}` pairs (the reference's embedding_qa.json)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from docent.errors import UsageError
from docent.linear_text import LinearTextModel
from docent.tags import ARTIFACT_KIND, SANITY_CHECKS, TagClassifier, preprocess, tag_of, training_text


class TrainingDataError(UsageError, ValueError):
    pass


@dataclass
class RerankerTraining:
    classifier: TagClassifier
    metrics: dict[str, float]
    sanity: list[tuple[str, str, str, float]]  # question, expected, predicted, probability

    @property
    def sanity_passed(self) -> bool:
        return all(expected == predicted for _, expected, predicted, _ in self.sanity)


def load_qa_pairs(path: Path) -> list[tuple[str, str]]:
    if not path.is_file():
        raise TrainingDataError(f"training data not found: {path}")
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
        return [(str(r["question"]).strip(), str(r["source"]).strip()) for r in rows]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise TrainingDataError(f"{path}: expected a JSON array of {{question, source}} objects ({exc})") from exc


def train_reranker(pairs: list[tuple[str, str]], base_url: str, seed: int = 1234, test_size: float = 0.2) -> RerankerTraining:
    """Stratified split with a fixed seed; weighted precision/recall/f1 on the held-out part."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import precision_recall_fscore_support
    from sklearn.model_selection import train_test_split

    texts = [preprocess(training_text(q, s)) for q, s in pairs]
    tags = [tag_of(s, base_url) for _, s in pairs]
    if len(set(tags)) < 2:
        raise TrainingDataError(f"the sources name fewer than two docs areas under {base_url}: wrong --base-url?")
    train_x, test_x, train_y, test_y = train_test_split(texts, tags, test_size=test_size, stratify=tags, random_state=seed)
    vectorizer = TfidfVectorizer(lowercase=True)
    classifier = LogisticRegression(max_iter=1000).fit(vectorizer.fit_transform(train_x), train_y)
    predicted = classifier.predict(vectorizer.transform(test_x))
    precision, recall, f1, _ = precision_recall_fscore_support(test_y, predicted, average="weighted", zero_division=0)
    metrics = {"precision": float(precision), "recall": float(recall), "f1": float(f1), "average": "weighted",
               "test_rows": len(test_y)}
    model = LinearTextModel.from_sklearn(
        ARTIFACT_KIND, vectorizer, classifier, {"base_url": base_url, "seed": seed, "metrics": metrics, "rows": len(pairs)}
    )
    tagger = TagClassifier(model)
    predictions = tagger.predict([q for q, _ in SANITY_CHECKS])
    sanity = [(q, expected, p.tag, p.probability) for (q, expected), p in zip(SANITY_CHECKS, predictions)]
    return RerankerTraining(tagger, metrics, sanity)
