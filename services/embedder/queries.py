"""Query embedding for the serving path: one model per index's embedding model, recent vectors cached.

Users ask the same questions again (a Slack channel, a docs widget); a query seen
recently costs a dictionary lookup instead of a forward pass.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path

import numpy as np

from docent.embedding.model import Embedder
from docent.settings import EmbeddingSettings

log = logging.getLogger(__name__)

WARM_UP_QUERY = "How do I scale a deployment?"


class QueryEmbedder:
    def __init__(self, settings: EmbeddingSettings, cache_size: int, onnx_dir: Path):
        self.settings, self.cache_size, self.onnx_dir = settings, cache_size, onnx_dir
        self.models: dict[str, Embedder] = {}
        self.cache: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self.hits = self.misses = 0

    def model(self, name: str | None = None) -> Embedder:
        name = name or self.settings.model
        if name not in self.models:
            self.models[name] = self._load(name)
        return self.models[name]

    def _load(self, name: str) -> Embedder:
        from docent.embedding.onnx import load_backend_embedder

        return load_backend_embedder(self.settings.model_copy(update={"model": name}), self.settings.query_backend, self.onnx_dir)

    def warm_up(self) -> None:
        """Load the default model and run one pass, so the first user does not wait for either."""
        self.model().embed([WARM_UP_QUERY])

    def embed(self, queries: list[str], model: str | None = None) -> np.ndarray:
        """Vectors of `queries` (prefixed as the settings say), computing only those not cached."""
        name = model or self.settings.model
        keys = [(name, self.settings.query_prefix + q) for q in queries]
        found = {k: self.cache[k] for k in keys if k in self.cache}
        missing = [k for k in dict.fromkeys(keys) if k not in found]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        if missing:
            computed = self.model(name).embed([text for _, text in missing])
            found.update(zip(missing, computed))
            self._remember(dict(zip(missing, computed)))
        for key in found:
            if key in self.cache:
                self.cache.move_to_end(key)
        return np.stack([found[k] for k in keys])

    async def embed_query(self, query: str, model: str) -> np.ndarray:
        """One query's vector, computed in this process: the `embed` callable of an in-process retriever."""
        return self.embed([query], model)[0]

    def _remember(self, vectors: dict[tuple[str, str], np.ndarray]) -> None:
        if not self.cache_size:
            return
        self.cache.update(vectors)
        while len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)
