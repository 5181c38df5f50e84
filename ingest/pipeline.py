"""The ingest job: scan → (Ray Data) read, parse, chunk → embed in an actor pool → write.

Only new and changed files go through Ray; each finished document is written with all
its chunks in one transaction together with its content hash, so a run that dies
leaves every document either wholly old or wholly new, and the next run redoes
exactly the documents that did not make it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ray.exceptions import RayError

from docent.db import CONNECTION_ERRORS, DatabaseUnavailable, connect
from docent.embedding.model import check_model_available, load_embedder, resolve_model_path
from docent.embedding.onnx import ingest_backend, load_backend_embedder
from docent.errors import IngestError, SourceError
from docent.lexical import LexicalIndex, payload_checksum
from docent.ray_runtime import ensure_ray
from docent.settings import EmbeddingSettings, Settings
from docent.store import DocumentChunks, IndexRecord, IndexStore
from docent.types import Chunk, ChunkUnit, IndexConfig, LexicalBackend
from docent.uris import is_remote
from ingest.crawl import CrawlReport, crawl, is_web
from ingest.documents import ParseOptions, chunk_rows
from ingest.progress import IngestProgress, NoProgress
from ingest.remote import mirror
from ingest.scan import Scan, SourceFile, scan

log = logging.getLogger(__name__)


@dataclass
class IngestReport:
    index: str
    files_read: int = 0
    files_unchanged: int = 0
    unchanged_skipped: int = 0  # unchanged files that were unreadable last time too
    files_removed: int = 0
    files_missing: int = 0  # gone from the source but kept, for want of --prune
    skipped: dict[str, str] = field(default_factory=dict)  # uri -> reason
    excluded: int = 0
    unsupported: int = 0
    sections: int = 0
    chunks_added: int = 0
    chunks_unchanged: int = 0
    chunks_removed: int = 0
    chunks_over_limit: int = 0
    seconds: float = 0.0
    lexical_rebuilt: bool = False
    vector_index_built: bool = False
    crawl: CrawlReport | None = None  # when a site was read by URL
    embed_nodes: set[str] = field(default_factory=set)  # Ray nodes whose actors embedded chunks

    @property
    def chunks_per_second(self) -> float:
        return self.chunks_added / self.seconds if self.seconds else 0.0

    @property
    def skip_reasons(self) -> Counter:
        return Counter(self.skipped.values())


def run_ingest(
    path: Path | str,
    settings: Settings,
    *,
    base_url: str | None = None,
    prune: bool = False,
    progress: IngestProgress | None = None,
) -> IngestReport:
    return asyncio.run(ingest(path, settings, base_url=base_url, prune=prune, progress=progress or NoProgress()))


async def ingest(
    path: Path | str, settings: Settings, *, base_url: str | None, prune: bool, progress: IngestProgress
) -> IngestReport:
    """Index the docs tree at `path`: a folder, a file, or an `s3://bucket/prefix` (mirrored locally first)."""
    started = time.perf_counter()
    crawled = None
    if is_remote(path):
        # On this (the main) thread: reading the changed objects is a Ray Data job (see _index_documents).
        path = mirror(str(path), settings, progress).root
    elif is_web(path):
        crawled = crawl(str(path), settings, progress)
        path, base_url = crawled.root, base_url or crawled.base_url
        if "url_style" not in settings.ingest.model_fields_set:  # the site's own, unless asked otherwise
            settings = settings.model_copy(
                update={"ingest": settings.ingest.model_copy(update={"url_style": crawled.url_style})}
            )
    path = Path(path)
    if prune and path.is_file():
        raise SourceError("--prune needs a directory: with a single file every other document would be removed")
    check_model_available(settings.embedding)
    progress.stage("scan", None)
    source = scan(path, settings.ingest.exclude)
    report = IngestReport(
        index=settings.index_name,
        crawl=crawled,
        skipped=dict(source.unreadable),
        excluded=source.excluded,
        unsupported=source.unsupported,
    )
    conn = await connect(settings)
    try:
        store = IndexStore(conn)
        async with store.writer_lock(settings.index_name):
            index = await _existing_index(store, settings)
            stored = await store.documents(index) if index else {}
            current = {f.uri for f in source.files} | set(source.unreadable)
            todo = [f for f in source.files if f.uri not in stored or stored[f.uri].content_hash != f.content_hash]
            unchanged = current - {f.uri for f in todo} - set(source.unreadable)
            report.files_unchanged = len(unchanged)
            report.unchanged_skipped = sum(stored[uri].skip_reason is not None for uri in unchanged)
            report.chunks_unchanged = sum(stored[uri].chunk_count for uri in unchanged)
            gone = sorted(set(stored) - current)
            if index and gone and prune:
                removed = await store.delete_documents(index, gone)
                report.files_removed, report.chunks_removed = removed.documents, removed.chunks_removed
            else:
                report.files_missing = len(gone)
            if todo:
                index = await _index_documents(todo, source, store, index, settings, base_url, report, progress)
            if index:
                await finish_index(store, index, settings, report, progress)
    finally:
        await conn.close()
    if todo or report.files_removed:
        _forget_cached_answers(settings)
    report.seconds = time.perf_counter() - started
    return report


def _forget_cached_answers(settings: Settings) -> None:
    """The gateway's cached answers from the old contents. They would miss anyway (the
    index's revision is part of their key); deleting them frees Redis at once."""
    from redis.exceptions import RedisError

    from docent.cached_answers import forget_index_answers

    try:
        forgotten = forget_index_answers(settings, settings.index_name)
    except RedisError as exc:
        log.warning("cached answers of %s left to expire (Redis: %s)", settings.index_name, exc)
        return
    if forgotten:
        log.info("forgot %d cached answers of %s", forgotten, settings.index_name)


def index_config(settings: Settings, embedding_dim: int) -> IndexConfig:
    return IndexConfig(
        name=settings.index_name,
        embedding_model=settings.embedding.model,
        embedding_dim=embedding_dim,
        chunk_size=settings.chunking.chunk_size,
        chunk_overlap=settings.chunking.chunk_overlap,
        chunk_unit=settings.chunking.unit,
        include_titles=settings.chunking.include_titles,
        url_style=settings.ingest.url_style,
    )


async def _existing_index(store: IndexStore, settings: Settings) -> IndexRecord | None:
    """The index if it exists and matches the settings; the dimension is probed only on a model change."""
    index = await store.get(settings.index_name)
    if index is None:
        return None
    dim = index.config.embedding_dim
    if index.config.embedding_model != settings.embedding.model:
        dim = load_embedder(settings.embedding).dimension
    return await store.ensure(index_config(settings, dim))


async def _index_documents(
    todo: list[SourceFile],
    source: Scan,
    store: IndexStore,
    index: IndexRecord | None,
    settings: Settings,
    base_url: str | None,
    report: IngestReport,
    progress: IngestProgress,
) -> IndexRecord:
    progress.stage("index", len(todo))
    # On this (the main) thread: Ray's node processes die with the thread that started them.
    ensure_ray(settings)
    writer = _DocumentWriter(store, index, settings, report)
    batches = _embedded_batches(todo, source.root, settings, base_url)
    try:
        async for rows in _in_thread(batches):
            if store.conn.is_closed():  # noticed with the next batch, not at the next write minutes later
                raise _database_lost("the connection closed")
            for row in rows:
                if writer.add(row):
                    progress.advance("index")
            if writer.pending_chunks >= settings.ingest.write_batch_chunks:
                await writer.flush()
    except RayError as exc:
        # Documents finished before the failure are written; a re-run does the rest.
        await writer.flush()
        raise IngestError(f"the Ray job failed: {_last_line(exc)}") from exc
    except CONNECTION_ERRORS as exc:
        raise _database_lost(f"{type(exc).__name__}: {exc}") from exc
    finally:
        batches.close()  # the Ray Data job stops now, whatever ended the loop, not at the interpreter's exit
    await writer.flush()
    return writer.index


def _database_lost(cause: str) -> DatabaseUnavailable:
    return DatabaseUnavailable(
        f"the database went away during the ingest ({cause}); documents written before stay, and a re-run does the rest"
    )


def _last_line(error: Exception) -> str:
    """The innermost message of a Ray error (whose text carries the remote traceback)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


async def _in_thread(iterator: Iterator[list[dict[str, Any]]]):
    """Iterate a blocking iterator (Ray's) without blocking the event loop."""
    done = object()
    while (item := await asyncio.to_thread(next, iterator, done)) is not done:
        yield item


class _DocumentWriter:
    """Collects rows until a document is complete, then writes finished documents in bulk."""

    def __init__(self, store: IndexStore, index: IndexRecord | None, settings: Settings, report: IngestReport):
        self.store, self.index, self.settings, self.report = store, index, settings, report
        self.partial: dict[str, list[dict[str, Any]]] = {}
        self.ready: list[DocumentChunks] = []
        self.pending_chunks = 0
        self.dimension: int | None = None

    def add(self, row: dict[str, Any]) -> int:
        """Take one row; returns how many documents it completed (0 or 1)."""
        if row["error"]:
            self.report.skipped[row["uri"]] = row["error"]
            if row["content_hash"]:  # remembered, so an unchanged unreadable file is not read again
                self.ready.append(DocumentChunks(row["uri"], row["content_hash"], skip_reason=str(row["error"])))
            return 1
        rows = self.partial.setdefault(row["uri"], [])
        rows.append(row)
        if len(rows) < row["n_chunks"]:
            return 0
        del self.partial[row["uri"]]
        rows.sort(key=lambda r: r["ordinal"])
        self.dimension = len(rows[0]["embedding"])
        self.ready.append(DocumentChunks(row["uri"], row["content_hash"], [_chunk(r) for r in rows]))
        self.pending_chunks += len(rows)
        self.report.files_read += 1
        self.report.sections += int(rows[0]["sections"])
        self.report.chunks_over_limit += sum(bool(r["over_limit"]) for r in rows)
        self.report.embed_nodes.update(str(r["embed_node"]) for r in rows)
        return 1

    async def flush(self) -> None:
        if not self.ready:
            return
        if self.index is None:
            if self.dimension is None:  # nothing usable yet: no index to create
                return
            self.index = await self.store.ensure(index_config(self.settings, self.dimension))
        result = await self.store.write_documents(self.index, self.ready)
        self.report.chunks_added += result.chunks_added
        self.report.chunks_removed += result.chunks_removed
        self.ready, self.pending_chunks = [], 0


def _chunk(row: dict[str, Any]) -> Chunk:
    return Chunk(
        document_uri=row["uri"],
        ordinal=int(row["ordinal"]),
        text=row["text"],
        source=row["source"],
        section_title=row["section_title"],
        page_title=row["page_title"],
        token_count=int(row["token_count"]),
        section_offset=int(row["section_offset"]),
        embedding=row["embedding"],
    )


async def finish_index(
    store: IndexStore, index: IndexRecord, settings: Settings, report: IngestReport, progress: IngestProgress
) -> None:
    """HNSW after the bulk load; BM25 rebuilt whenever the chunks changed since it was built."""
    db = settings.database
    report.vector_index_built = await store.ensure_vector_index(index, db.hnsw_m, db.hnsw_ef_construction)
    revision = await store.revision(index)
    if await store.lexical_revision(index) == revision:
        return
    progress.stage("bm25", None)
    ids, chunks = await store.chunk_texts(index)
    texts = [c.embedding_text if index.config.include_titles else c.text for c in chunks]
    lexical_settings = settings.lexical.model_copy(update={"backend": LexicalBackend.BM25S})
    payload = LexicalIndex.build(ids, texts, lexical_settings).to_bytes()
    await store.save_lexical(index, revision, "bm25s", payload_checksum(payload), payload)
    report.lexical_rebuilt = True


def _embedded_batches(
    todo: list[SourceFile], root: Path, settings: Settings, base_url: str | None
) -> Iterator[list[dict[str, Any]]]:
    import ray
    from ray.data import ActorPoolStrategy

    options = ParseOptions(
        root=root,
        base_url=base_url,
        anchor_style=settings.ingest.anchor_style,
        chunking=settings.chunking,
        url_style=settings.ingest.url_style,
        tokenizer_path=resolve_model_path(settings.embedding.model) if settings.chunking.unit == ChunkUnit.TOKENS else None,
    )
    num_gpus = settings.ingest.num_gpus
    if num_gpus is None:
        num_gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
    files = ray.data.from_items([{"uri": f.uri} for f in todo], override_num_blocks=min(len(todo), 64))
    # The files (a folder, or the mirror of a bucket or a site) are on the driver's machine: parse there.
    # The embedding, the heavy part, spreads over the cluster.
    on_driver = {"ray.io/node-id": ray.get_runtime_context().get_node_id()}
    chunks = files.flat_map(chunk_rows, fn_kwargs={"options": options}, label_selector=on_driver)
    embedded = chunks.map_batches(
        EmbedChunks,
        fn_constructor_kwargs={
            "settings": settings.embedding,
            "onnx_dir": settings.onnx_dir,
            "threads": settings.ingest.embed_threads,
            "actors": settings.ingest.embed_actors,
        },
        batch_size=settings.ingest.embed_block_rows,
        batch_format="numpy",
        compute=ActorPoolStrategy(size=settings.ingest.embed_actors),
        num_gpus=num_gpus,
    )
    for batch in embedded.iter_batches(batch_size=None, batch_format="numpy"):
        yield _rows(batch)


def _rows(batch: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    columns = list(batch)
    return [{c: batch[c][i] for c in columns} for i in range(len(batch["uri"]))]


class EmbedChunks:
    """Ray Data actor: embeds a block of chunk rows (skipped-file rows pass through)."""

    def __init__(self, settings: EmbeddingSettings, onnx_dir: Path, threads: int | None, actors: int):
        import torch

        # Ray caps an actor's threads at its one logical CPU; the model is the bottleneck, give it the cores.
        threads = threads or max(1, (os.cpu_count() or 1) // actors)
        torch.set_num_threads(threads)
        self.embedder = load_backend_embedder(settings, ingest_backend(settings), onnx_dir, threads)
        import ray

        self.node = ray.get_runtime_context().get_node_id()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        keep = batch["n_chunks"] > 0
        texts = [str(t) for t in batch["embed_text"][keep]]
        vectors = np.zeros((len(keep), self.embedder.dimension), dtype=np.float32)
        tokens = np.zeros(len(keep), dtype=np.int32)
        if texts:
            vectors[keep] = self.embedder.embed(texts)
            tokens[keep] = self.embedder.count_tokens(texts)
        batch["embedding"] = vectors
        batch["token_count"] = tokens
        limit = self.embedder.max_tokens or np.iinfo(np.int32).max
        batch["over_limit"] = tokens > limit
        batch["embed_node"] = np.full(len(keep), self.node, dtype=object)  # which Ray node did the work
        return batch
