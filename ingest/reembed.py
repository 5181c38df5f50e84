"""A new index with another embedding model, from an existing index's chunks: nothing is read or parsed again.

Vectors of two models never share an index (an ingest refuses the mix), so a model
change means a new index. Its chunks are the source index's, row for row (same text,
sources, titles, offsets and content hashes), so a later `docent ingest` into the new
index with the new model skips every unchanged file, as it would have in the old one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass

from docent.db import connect
from docent.embedding.model import check_model_available
from docent.embedding.onnx import ingest_backend, load_backend_embedder
from docent.errors import UsageError
from docent.settings import Settings
from docent.store import DocumentChunks, IndexStore
from docent.types import ChunkUnit, IndexConfig
from ingest.pipeline import IngestReport, finish_index
from ingest.progress import IngestProgress, NoProgress


class ReembedError(UsageError, ValueError):
    """A re-embedding that cannot start: the message says why."""


@dataclass
class ReembedReport:
    source_index: str
    index: str
    model: str
    documents: int = 0
    chunks: int = 0
    seconds: float = 0.0

    @property
    def chunks_per_second(self) -> float:
        return self.chunks / self.seconds if self.seconds else 0.0


def run_reembed(source_index: str, settings: Settings, progress: IngestProgress | None = None) -> ReembedReport:
    return asyncio.run(reembed(source_index, settings, progress or NoProgress()))


async def reembed(source_index: str, settings: Settings, progress: IngestProgress) -> ReembedReport:
    """Index `settings.index_name` with `settings.embedding`, from the chunks of `source_index`."""
    started = time.perf_counter()
    if source_index == settings.index_name:
        raise ReembedError("the new index needs a name of its own (--index NEW): an index holds one model's vectors")
    check_model_available(settings.embedding)
    report = ReembedReport(source_index, settings.index_name, settings.embedding.model)
    conn = await connect(settings)
    try:
        store = IndexStore(conn)
        source = await store.require(source_index)
        _check_reusable(source.config, settings)
        async with store.writer_lock(settings.index_name):
            if await store.get(settings.index_name):
                raise ReembedError(
                    f"index {settings.index_name!r} exists: choose another --index, or remove it first "
                    f"(`docent drop-index {settings.index_name}`)"
                )
            documents = await store.stored_documents(source)
            embedder = load_backend_embedder(settings.embedding, ingest_backend(settings.embedding), settings.onnx_dir)
            config = source.config.model_copy(
                update={"name": settings.index_name, "embedding_model": settings.embedding.model,
                        "embedding_dim": embedder.dimension}
            )
            index = await store.ensure(config)
            progress.stage("embed", sum(len(d.chunks) for d in documents))
            for batch in _batches(documents, settings.ingest.write_batch_chunks):
                embedded = await asyncio.to_thread(_embed_documents, embedder, batch, config.include_titles)
                result = await store.write_documents(index, embedded)
                report.documents += result.documents
                report.chunks += result.chunks_added
                progress.advance("embed", result.chunks_added)
            await finish_index(store, index, settings, IngestReport(index=settings.index_name), progress)
    finally:
        await conn.close()
    report.seconds = time.perf_counter() - started
    return report


def _check_reusable(source: IndexConfig, settings: Settings) -> None:
    if source.chunk_unit == ChunkUnit.TOKENS and source.embedding_model != settings.embedding.model:
        raise ReembedError(
            f"index {source.name!r} cut its chunks in tokens of {source.embedding_model!r}: another model's "
            "tokenizer would cut them differently, so ingest the docs again into the new index instead"
        )


def _batches(documents: list[DocumentChunks], chunks_per_batch: int):
    """Whole documents, about `chunks_per_batch` chunks at a time (one write transaction each)."""
    batch: list[DocumentChunks] = []
    size = 0
    for document in documents:
        batch.append(document)
        size += len(document.chunks)
        if size >= chunks_per_batch:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _embed_documents(embedder, documents: list[DocumentChunks], include_titles: bool) -> list[DocumentChunks]:
    chunks = [c for d in documents for c in d.chunks]
    texts = [c.embedding_text if include_titles else c.text for c in chunks]
    vectors = iter(embedder.embed(texts))
    tokens = iter(embedder.count_tokens(texts) if texts else [])
    return [
        dataclasses.replace(
            d, chunks=[dataclasses.replace(c, embedding=next(vectors), token_count=next(tokens)) for c in d.chunks]
        )
        for d in documents
    ]
