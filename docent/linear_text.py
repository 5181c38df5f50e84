"""Bag-of-words linear classifiers (the reranker's tags, the router) as safe, versioned artifacts.

Training uses scikit-learn; the artifact keeps only what prediction needs (vocabulary,
idf weights, coefficients, classes) as arrays plus a JSON manifest, so loading one never
executes code from the file, unlike a pickle.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from docent.errors import DocentError

FORMAT_VERSION = 1


class ArtifactError(DocentError, ValueError):
    pass


@dataclass
class LinearTextModel:
    kind: str
    vocabulary: dict[str, int]
    coef: np.ndarray  # (classes, features), or (1, features) for a binary model
    intercept: np.ndarray
    classes: list[Any]
    idf: np.ndarray | None = None  # TF-IDF weights; None for raw counts
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_sklearn(cls, kind: str, vectorizer, classifier, metadata: dict[str, Any]) -> LinearTextModel:
        idf = getattr(vectorizer, "idf_", None)
        return cls(
            kind=kind,
            vocabulary={term: int(i) for term, i in vectorizer.vocabulary_.items()},
            coef=np.asarray(classifier.coef_, dtype=np.float64),
            intercept=np.asarray(classifier.intercept_, dtype=np.float64),
            classes=[c.item() if hasattr(c, "item") else c for c in classifier.classes_],
            idf=None if idf is None else np.asarray(idf, dtype=np.float64),
            metadata=metadata,
        )

    def features(self, texts: list[str]):
        from sklearn.feature_extraction.text import CountVectorizer
        from sklearn.preprocessing import normalize

        counts = CountVectorizer(vocabulary=self.vocabulary).transform(texts).astype(np.float64)
        if self.idf is None:
            return counts
        return normalize(counts.multiply(self.idf).tocsr())

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """Probabilities per class, columns in the order of `classes`."""
        scores = self.features(texts) @ self.coef.T + self.intercept
        if self.coef.shape[0] == 1:
            positive = 1.0 / (1.0 + np.exp(-scores[:, 0]))
            return np.column_stack([1.0 - positive, positive])
        scores = scores - scores.max(axis=1, keepdims=True)
        exp = np.exp(scores)
        return exp / exp.sum(axis=1, keepdims=True)

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {"coef": self.coef, "intercept": self.intercept}
        if self.idf is not None:
            arrays["idf"] = self.idf
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        weights = buffer.getvalue()
        manifest = {
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "classes": self.classes,
            "vocabulary": self.vocabulary,
            "weights_sha256": hashlib.sha256(weights).hexdigest(),
            "metadata": self.metadata,
        }
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("manifest.json", json.dumps(manifest))
            archive.writestr("weights.npz", weights)
        return path

    @classmethod
    def load(cls, path: Path, kind: str) -> LinearTextModel:
        if not path.is_file():
            raise ArtifactError(f"no {kind} artifact at {path}: train one with `docent train {kind}`")
        try:
            with zipfile.ZipFile(path) as archive:
                manifest = json.loads(archive.read("manifest.json"))
                weights = archive.read("weights.npz")
        except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as exc:
            raise ArtifactError(f"{path} is not a docent model artifact ({exc})") from exc
        if manifest.get("kind") != kind:
            raise ArtifactError(f"{path} holds a {manifest.get('kind')!r} model, not a {kind!r} one")
        if manifest.get("format_version") != FORMAT_VERSION:
            raise ArtifactError(f"{path} has format version {manifest.get('format_version')}; retrain it")
        if hashlib.sha256(weights).hexdigest() != manifest["weights_sha256"]:
            raise ArtifactError(f"{path}: weights do not match their checksum")
        arrays = np.load(io.BytesIO(weights), allow_pickle=False)
        return cls(
            kind=kind,
            vocabulary=manifest["vocabulary"],
            coef=arrays["coef"],
            intercept=arrays["intercept"],
            classes=manifest["classes"],
            idf=arrays["idf"] if "idf" in arrays.files else None,
            metadata=manifest["metadata"] | {"created_at": manifest["created_at"]},
        )
