"""The reranker as a service: the tag classifier (when trained) and an optional cross-encoder."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

from docent.linear_text import ArtifactError
from docent.settings import Settings
from docent.tags import TagClassifier, TagPrediction
from docent.types import SearchHit
from services.reranker.rerank import rerank

log = logging.getLogger(__name__)


class RerankerService:
    def __init__(self, settings: Settings):
        self.settings = settings.rerank
        self.classifier, self.problem = _load_classifier(settings.model_artifact("reranker"))
        self.cross_encoder = _load_cross_encoder(self.settings.cross_encoder_model)

    async def enabled(self) -> bool:
        """Whether it has anything to rerank with: a tag classifier or a cross-encoder."""
        return self.classifier is not None or self.cross_encoder is not None

    async def predict(self, query: str) -> TagPrediction | None:
        """The docs area of the question, or None without a trained classifier."""
        if self.classifier is None:
            return None
        return self.classifier.predict([query])[0]

    def by_tag(self, hits: Sequence[SearchHit], prediction: TagPrediction | None) -> list[SearchHit]:
        """The reference's rerank: the predicted area first when the classifier is confident, cut to k."""
        tag = prediction.confident(self.settings.threshold) if prediction else "other"
        return rerank(hits, [h.source for h in hits], tag, self._base_url(), self.settings.k)

    def _base_url(self) -> str:
        """Where the tags come from: the setting, else the URL the classifier was trained with."""
        trained = self.classifier.model.metadata.get("base_url", "") if self.classifier else ""
        return self.settings.base_url or trained

    async def cross_rerank(self, query: str, hits: list[SearchHit]) -> list[SearchHit]:
        """Hits ordered by the cross-encoder's relevance score; unchanged without one."""
        if self.cross_encoder is None or not hits:
            return hits
        scores = await asyncio.to_thread(self.cross_encoder.predict, [(query, h.text) for h in hits])
        ordered = sorted(zip(hits, scores), key=lambda pair: -float(pair[1]))
        return [h.model_copy(update={"rank": rank, "score": float(s)}) for rank, (h, s) in enumerate(ordered, 1)]

    async def ready(self) -> dict[str, str]:
        return {"reranker": self.problem} if self.problem else {}


def _load_classifier(path: Path) -> tuple[TagClassifier | None, str | None]:
    """A missing artifact only turns tag reranking off; a broken one is a problem to report."""
    if not path.exists():
        log.info("no reranker artifact at %s: tag reranking is off (docent train reranker)", path)
        return None, None
    try:
        return TagClassifier.load(path), None
    except ArtifactError as exc:
        return None, str(exc)


def _load_cross_encoder(model: str | None):
    if not model:
        return None
    from sentence_transformers import CrossEncoder

    from docent.embedding.model import resolve_model_path

    return CrossEncoder(resolve_model_path(model))
