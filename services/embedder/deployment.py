"""The embedder deployment: concurrent queries share one forward pass (`@serve.batch`)."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import numpy as np
from ray import serve
from ray.serve.metrics import Counter, Histogram

from docent.observability import add, send_logs_to_serve
from docent.settings import Settings
from services.embedder.queries import QueryEmbedder

BATCH_HISTORY = 256
BATCH_SIZE_BUCKETS = [1, 2, 4, 8, 16, 32, 64]


@serve.deployment(name="embedder", max_ongoing_requests=64, ray_actor_options={"num_cpus": 1})
class EmbedderDeployment:
    def __init__(self, settings: Settings):
        send_logs_to_serve(settings.serving.log_flush_s)  # docent's log lines join the replica's JSON log
        serving = settings.serving
        self.queries = QueryEmbedder(settings.embedding, serving.query_cache_size, settings.onnx_dir)
        self.queries.warm_up()
        self.batch_sizes: list[int] = []  # of recent batches: shows whether concurrent queries share passes
        self.embed.set_max_batch_size(serving.embed_max_batch_size)
        self.embed.set_batch_wait_timeout_s(serving.embed_batch_wait_s)
        # Exported by Ray's metrics agent (as ray_docent_…), tagged with deployment and replica.
        self.cache_hits = Counter("docent_embed_cache_hits", "Query vectors served from the cache")
        self.cache_misses = Counter("docent_embed_cache_misses", "Query vectors computed")
        self.batch_size = Histogram("docent_embed_batch_size", "Queries per forward pass", BATCH_SIZE_BUCKETS)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.0)
    async def embed(self, queries: list[str], models: list[str]) -> list[np.ndarray]:
        """One pass per model in the batch; off the event loop so the next batch can gather meanwhile."""
        self.batch_sizes = [*self.batch_sizes[-(BATCH_HISTORY - 1):], len(queries)]
        self.batch_size.observe(len(queries))
        hits, misses = self.queries.hits, self.queries.misses
        by_model: dict[str, list[int]] = defaultdict(list)
        for position, model in enumerate(models):
            by_model[model].append(position)
        vectors: list[np.ndarray | None] = [None] * len(queries)
        for model, positions in by_model.items():
            computed = await asyncio.to_thread(self.queries.embed, [queries[p] for p in positions], model)
            for position, vector in zip(positions, computed):
                vectors[position] = vector
        add(self.cache_hits, self.queries.hits - hits)
        add(self.cache_misses, self.queries.misses - misses)
        return vectors

    async def ready(self) -> dict[str, str]:
        return {}

    async def stats(self) -> dict[str, object]:
        queries = self.queries
        return {"cache_hits": queries.hits, "cache_misses": queries.misses, "batch_sizes": list(self.batch_sizes)}
