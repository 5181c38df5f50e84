"""Indexes, documents and chunks in PostgreSQL + pgvector.

Each index keeps its chunks in a table of its own, `chunks_<index id>`, whose
`embedding` column is `vector(d)` with the index's dimension, with its own HNSW
(cosine) index. Table names are built from the integer id only, never from user input.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from http import HTTPStatus
from typing import Any

import asyncpg
import numpy as np

from docent.db import CONNECTION_ERRORS, DatabaseError
from docent.errors import ExitCode, NotFound
from docent.sections import SectionPiece, StoredSection, join_pieces
from docent.types import Chunk, IndexConfig, IndexInfo, page_of

# Advisory-lock namespace of ingest writers (the other key is a hash of the index name).
_WRITER_LOCK_SPACE = 2

CHUNK_COLUMNS = (
    "document_id", "ordinal", "text", "source", "section_title", "page_title", "token_count", "section_offset", "embedding",
)


HNSW_EF_SEARCH_MAX = 1000  # pgvector's limit: a larger k is answered from this many candidates


class IndexNotFound(NotFound, DatabaseError):
    """No index of that name. A 404; exit 1, except where a command takes the index as one of its inputs
    (the eval commands: `clear_errors(input_errors=NAMED_INDEX)`), where it is exit 2."""

    http_status, exit_code, retryable = NotFound.http_status, ExitCode.RUNTIME, False


class IndexMismatch(DatabaseError):
    """The configuration asked for differs from the existing index's."""

    http_status, retryable = HTTPStatus.CONFLICT, False


class IndexBusy(DatabaseError):
    pass


@dataclass(frozen=True)
class IndexRecord:
    id: int
    config: IndexConfig

    @property
    def table(self) -> str:
        return f"chunks_{self.id}"

    @property
    def hnsw_name(self) -> str:
        return f"chunks_{self.id}_embedding_hnsw"


@dataclass
class DocumentChunks:
    """A document's whole new content: written together or not at all.

    A document with a `skip_reason` could not be used: it is recorded without chunks.
    """

    uri: str
    content_hash: str
    chunks: list[Chunk] = field(default_factory=list)
    skip_reason: str | None = None


@dataclass(frozen=True)
class StoredDocument:
    content_hash: str
    chunk_count: int
    skip_reason: str | None


@dataclass
class WriteResult:
    documents: int = 0
    chunks_added: int = 0
    chunks_removed: int = 0


class IndexStore:
    def __init__(self, conn: asyncpg.Connection):
        self.conn = conn

    async def get(self, name: str) -> IndexRecord | None:
        row = await self.conn.fetchrow("SELECT id, config FROM indexes WHERE name = $1", name)
        if row is None:
            return None
        return IndexRecord(row["id"], IndexConfig(**json.loads(row["config"])))

    async def require(self, name: str) -> IndexRecord:
        index = await self.get(name)
        if index is None:
            known = [r["name"] for r in await self.conn.fetch("SELECT name FROM indexes ORDER BY name")]
            hint = f"; existing: {', '.join(known)}" if known else "; run `docent ingest` first"
            raise IndexNotFound(f"no index named {name!r}{hint}")
        return index

    async def ensure(self, config: IndexConfig) -> IndexRecord:
        """The index named by `config`, created if missing; an error if it was built differently."""
        existing = await self.get(config.name)
        if existing is not None:
            _check_compatible(existing.config, config)
            return existing
        async with self.conn.transaction():
            index_id = await self.conn.fetchval(
                "INSERT INTO indexes (name, config, embedding_dim) VALUES ($1, $2, $3)"
                " ON CONFLICT (name) DO NOTHING RETURNING id",
                config.name,
                config.model_dump_json(),
                config.embedding_dim,
            )
            if index_id is None:  # created meanwhile by a concurrent ingest
                return await self.ensure(config)
            await self.conn.execute(_chunk_table_ddl(index_id, config.embedding_dim))
        return IndexRecord(index_id, config)

    async def list(self) -> list[IndexInfo]:
        rows = await self.conn.fetch(
            "SELECT i.id, i.config, i.revision, i.updated_at,"
            " (SELECT count(*) FROM documents d WHERE d.index_id = i.id AND d.skip_reason IS NULL) AS documents,"
            " coalesce((SELECT sum(chunk_count) FROM documents d WHERE d.index_id = i.id), 0) AS chunks,"
            " pg_total_relation_size(format('chunks_%s', i.id)) AS size_bytes,"
            " (SELECT l.revision FROM lexical_indexes l WHERE l.index_id = i.id) AS lexical_revision,"
            " to_regclass(format('chunks_%s_embedding_hnsw', i.id)) IS NOT NULL AS has_hnsw"
            " FROM indexes i ORDER BY i.name"
        )
        return [
            IndexInfo(
                **json.loads(r["config"]),
                id=r["id"],
                revision=r["revision"],
                documents=r["documents"],
                chunks=r["chunks"],
                size_bytes=r["size_bytes"],
                updated_at=r["updated_at"].isoformat(),
                incomplete=_incomplete(r["revision"], r["lexical_revision"], r["has_hnsw"]),
            )
            for r in rows
        ]

    async def drop(self, name: str) -> None:
        index = await self.require(name)
        async with self.conn.transaction():
            await self.conn.execute(f"DROP TABLE IF EXISTS {index.table}")
            await self.conn.execute("DELETE FROM indexes WHERE id = $1", index.id)

    @asynccontextmanager
    async def writer_lock(self, name: str) -> AsyncIterator[None]:
        """One writer per index name, even before the index exists; a second one fails fast."""
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big", signed=True)
        if not await self.conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", _WRITER_LOCK_SPACE, key):
            raise IndexBusy(f"another ingest is writing index {name!r}; try again when it ends")
        try:
            yield
        finally:
            try:
                await self.conn.execute("SELECT pg_advisory_unlock($1, $2)", _WRITER_LOCK_SPACE, key)
            except CONNECTION_ERRORS:
                pass  # the connection is gone, and its session's locks with it

    async def documents(self, index: IndexRecord) -> dict[str, StoredDocument]:
        rows = await self.conn.fetch(
            "SELECT uri, content_hash, chunk_count, skip_reason FROM documents WHERE index_id = $1", index.id
        )
        return {r["uri"]: StoredDocument(r["content_hash"], r["chunk_count"], r["skip_reason"]) for r in rows}

    async def pages(self, index: IndexRecord) -> set[str]:
        """The pages (source URLs before `#`) the index has chunks of."""
        rows = await self.conn.fetch(f"SELECT DISTINCT source FROM {index.table}")
        return {page_of(r["source"]) for r in rows}

    async def write_documents(self, index: IndexRecord, documents: Sequence[DocumentChunks]) -> WriteResult:
        """Replace the chunks of `documents` in one transaction, by COPY."""
        if not documents:
            return WriteResult()
        async with self.conn.transaction():
            rows = await self.conn.fetch(
                "INSERT INTO documents (index_id, uri, content_hash, chunk_count, skip_reason)"
                " SELECT $1, u, h, c, r FROM unnest($2::text[], $3::text[], $4::int[], $5::text[]) AS t(u, h, c, r)"
                " ON CONFLICT (index_id, uri) DO UPDATE SET content_hash = EXCLUDED.content_hash,"
                " chunk_count = EXCLUDED.chunk_count, skip_reason = EXCLUDED.skip_reason, updated_at = now()"
                " RETURNING id, uri",
                index.id,
                [d.uri for d in documents],
                [d.content_hash for d in documents],
                [len(d.chunks) for d in documents],
                [d.skip_reason for d in documents],
            )
            ids = {r["uri"]: r["id"] for r in rows}
            removed = await self._delete_chunks(index, list(ids.values()))
            records = [
                (ids[d.uri], c.ordinal, c.text, c.source, c.section_title, c.page_title, c.token_count,
                 c.section_offset, np.asarray(c.embedding, dtype=np.float32))
                for d in documents
                for c in d.chunks
            ]
            await self.conn.copy_records_to_table(index.table, records=records, columns=CHUNK_COLUMNS)
            await self._bump_revision(index)
        return WriteResult(len(documents), len(records), removed)

    async def delete_documents(self, index: IndexRecord, uris: Sequence[str]) -> WriteResult:
        if not uris:
            return WriteResult()
        async with self.conn.transaction():
            ids = [
                r["id"]
                for r in await self.conn.fetch(
                    "SELECT id FROM documents WHERE index_id = $1 AND uri = ANY($2::text[])", index.id, list(uris)
                )
            ]
            removed = await self._delete_chunks(index, ids)
            await self.conn.execute("DELETE FROM documents WHERE id = ANY($1::bigint[])", ids)
            await self._bump_revision(index)
        return WriteResult(len(ids), 0, removed)

    async def _delete_chunks(self, index: IndexRecord, document_ids: list[int]) -> int:
        status = await self.conn.execute(f"DELETE FROM {index.table} WHERE document_id = ANY($1::bigint[])", document_ids)
        return int(status.split()[-1])

    async def _bump_revision(self, index: IndexRecord) -> None:
        await self.conn.execute(
            "UPDATE indexes SET revision = revision + 1, updated_at = now() WHERE id = $1", index.id
        )

    async def revision(self, index: IndexRecord) -> int:
        return await self.conn.fetchval("SELECT revision FROM indexes WHERE id = $1", index.id)

    async def ensure_vector_index(self, index: IndexRecord, m: int, ef_construction: int) -> bool:
        """Build the HNSW index once the bulk load is done (building it first is far slower)."""
        exists = await self.conn.fetchval("SELECT to_regclass($1) IS NOT NULL", index.hnsw_name)
        if exists:
            return False
        await self.conn.execute(
            f"CREATE INDEX IF NOT EXISTS {index.hnsw_name} ON {index.table}"
            f" USING hnsw (embedding vector_cosine_ops) WITH (m = {int(m)}, ef_construction = {int(ef_construction)})"
        )
        return True

    async def chunk_texts(self, index: IndexRecord) -> tuple[list[int], list[Chunk]]:
        rows = await self.conn.fetch(f"{_select_chunks(index)} ORDER BY c.id")
        return [r["id"] for r in rows], [_chunk(r) for r in rows]

    async def stored_documents(self, index: IndexRecord) -> list[DocumentChunks]:
        """Every document of the index with its chunks in order (vectors left out), as an ingest wrote them."""
        chunks: dict[str, list[Chunk]] = {}
        for row in await self.conn.fetch(f"{_select_chunks(index)} ORDER BY d.uri, c.ordinal"):
            chunks.setdefault(row["uri"], []).append(_chunk(row))
        return [
            DocumentChunks(uri, stored.content_hash, chunks.get(uri, []), stored.skip_reason)
            for uri, stored in sorted((await self.documents(index)).items())
        ]

    async def chunks_by_id(self, index: IndexRecord, ids: Sequence[int]) -> dict[int, Chunk]:
        rows = await self.conn.fetch(f"{_select_chunks(index)} WHERE c.id = ANY($1::bigint[])", list(ids))
        return {r["id"]: _chunk(r) for r in rows}

    async def section_context(
        self, index: IndexRecord, hit_ids: Sequence[int], window: int | None
    ) -> dict[int, tuple[list[SectionPiece], int]]:
        """For each hit: its section's chunks in order (only `window` neighbours each side
        unless None) and the hit's position among them."""
        rows = await self.conn.fetch(
            f"SELECT h.id AS hit, c.id, c.text, c.section_offset FROM {index.table} h"
            f" JOIN {index.table} c ON c.document_id = h.document_id AND c.source = h.source"
            " WHERE h.id = ANY($1::bigint[]) AND ($2::int IS NULL OR abs(c.ordinal - h.ordinal) <= $2)"
            " ORDER BY h.id, c.ordinal",
            list(hit_ids),
            window,
        )
        context: dict[int, tuple[list[SectionPiece], int]] = {}
        for row in rows:
            pieces, _ = context.setdefault(row["hit"], ([], -1))
            if row["id"] == row["hit"]:
                context[row["hit"]] = (pieces, len(pieces))
            pieces.append(SectionPiece(row["text"], row["section_offset"]))
        return context

    async def sections(self, index: IndexRecord, sources: Sequence[str] | None = None) -> dict[str, StoredSection]:
        """Sections by source URL, in index order (all of them when `sources` is None): each one's
        chunks joined in order, every overlap kept once."""
        where, args = ("", []) if sources is None else (" WHERE source = ANY($1::text[])", [list(sources)])
        rows = await self.conn.fetch(
            f"SELECT source, text, section_offset, page_title, section_title FROM {index.table}{where}"
            " ORDER BY document_id, ordinal",
            *args,
        )
        pieces: dict[str, list[SectionPiece]] = {}
        titles: dict[str, tuple[str, str]] = {}
        for row in rows:
            pieces.setdefault(row["source"], []).append(SectionPiece(row["text"], row["section_offset"]))
            titles.setdefault(row["source"], (row["page_title"], row["section_title"]))
        return {source: StoredSection(source, *titles[source], join_pieces(parts)) for source, parts in pieces.items()}

    async def page_sections(self, index: IndexRecord, pages: Sequence[str]) -> dict[str, list[StoredSection]]:
        """The sections of each page (URL before `#`), in index order."""
        rows = await self.conn.fetch(
            f"SELECT DISTINCT ON (source) source, document_id, ordinal FROM {index.table}"
            " WHERE split_part(source, '#', 1) = ANY($1::text[]) ORDER BY source, document_id, ordinal",
            list(pages),
        )
        first = sorted(rows, key=lambda r: (r["document_id"], r["ordinal"]))
        sections = await self.sections(index, [r["source"] for r in first])
        by_page: dict[str, list[StoredSection]] = {}
        for row in first:
            by_page.setdefault(page_of(row["source"]), []).append(sections[row["source"]])
        return by_page

    async def semantic_search(
        self, index: IndexRecord, vector: np.ndarray, k: int, ef_search: int
    ) -> list[tuple[int, float]]:
        """(chunk id, cosine similarity) of the `k` nearest chunks, best first."""
        async with self.conn.transaction():
            await self.conn.execute(f"SET LOCAL hnsw.ef_search = {min(int(max(ef_search, k)), HNSW_EF_SEARCH_MAX)}")
            rows = await self.conn.fetch(
                f"SELECT id, 1 - (embedding <=> $1) AS score FROM {index.table} ORDER BY embedding <=> $1 LIMIT $2",
                np.asarray(vector, dtype=np.float32),
                k,
            )
        return [(r["id"], float(r["score"])) for r in rows]

    async def save_scope(self, index: IndexRecord, model: dict[str, Any]) -> None:
        """Store the index's scope model (`docent calibrate`), replacing any earlier one."""
        await self.conn.execute(
            "INSERT INTO index_scopes (index_id, model) VALUES ($1, $2)"
            " ON CONFLICT (index_id) DO UPDATE SET model = EXCLUDED.model, calibrated_at = now()",
            index.id,
            json.dumps(model),
        )

    async def scope(self, index: IndexRecord) -> tuple[dict[str, Any], datetime] | None:
        """The stored scope model and when it was calibrated; None for an index not calibrated."""
        row = await self.conn.fetchrow("SELECT model, calibrated_at FROM index_scopes WHERE index_id = $1", index.id)
        return None if row is None else (json.loads(row["model"]), row["calibrated_at"])

    async def scope_calibrated_at(self, index: IndexRecord) -> datetime | None:
        return await self.conn.fetchval("SELECT calibrated_at FROM index_scopes WHERE index_id = $1", index.id)

    async def save_lexical(self, index: IndexRecord, revision: int, backend: str, checksum: str, payload: bytes) -> None:
        await self.conn.execute(
            "INSERT INTO lexical_indexes (index_id, revision, backend, checksum, payload) VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (index_id) DO UPDATE SET revision = EXCLUDED.revision, backend = EXCLUDED.backend,"
            " checksum = EXCLUDED.checksum, payload = EXCLUDED.payload, built_at = now()",
            index.id,
            revision,
            backend,
            checksum,
            payload,
        )

    async def lexical_revision(self, index: IndexRecord) -> int | None:
        return await self.conn.fetchval("SELECT revision FROM lexical_indexes WHERE index_id = $1", index.id)

    async def load_lexical(self, index: IndexRecord) -> tuple[int, str, bytes] | None:
        row = await self.conn.fetchrow(
            "SELECT revision, checksum, payload FROM lexical_indexes WHERE index_id = $1", index.id
        )
        return None if row is None else (row["revision"], row["checksum"], row["payload"])


def _shown(value: object) -> str:
    """A setting's value as a user wrote it: 'tokens', not <ChunkUnit.TOKENS: 'tokens'>."""
    return repr(value.value if isinstance(value, Enum) else value)


def _incomplete(revision: int, lexical_revision: int | None, has_hnsw: bool) -> str | None:
    """Why an index is not ready to search, judged by what every finished ingest builds last."""
    if lexical_revision is None or not has_hnsw:
        missing = " and ".join(name for name, absent in (("BM25", lexical_revision is None), ("HNSW", not has_hnsw)) if absent)
        return f"no {missing} index: its first ingest was interrupted; run `docent ingest` again"
    if lexical_revision != revision:
        return "its BM25 index is older than its chunks: an ingest was interrupted; run `docent ingest` again"
    return None


def _chunk_table_ddl(index_id: int, dim: int) -> str:
    return (
        f"CREATE TABLE chunks_{int(index_id)} ("
        " id bigserial PRIMARY KEY,"
        " document_id bigint NOT NULL REFERENCES documents (id) ON DELETE CASCADE,"
        " ordinal integer NOT NULL,"
        " text text NOT NULL,"
        " source text NOT NULL,"
        " section_title text NOT NULL,"
        " page_title text NOT NULL,"
        " token_count integer NOT NULL,"
        " section_offset integer,"
        f" embedding vector({int(dim)}) NOT NULL,"
        " UNIQUE (document_id, ordinal))"
    )


def _select_chunks(index: IndexRecord) -> str:
    return (
        "SELECT c.id, d.uri, c.ordinal, c.text, c.source, c.section_title, c.page_title, c.token_count,"
        f" c.section_offset FROM {index.table} c JOIN documents d ON d.id = c.document_id"
    )


def _chunk(row: asyncpg.Record) -> Chunk:
    return Chunk(
        document_uri=row["uri"],
        ordinal=row["ordinal"],
        text=row["text"],
        source=row["source"],
        section_title=row["section_title"],
        page_title=row["page_title"],
        token_count=row["token_count"],
        section_offset=row["section_offset"],
    )


def _check_compatible(existing: IndexConfig, asked: IndexConfig) -> None:
    name = existing.name
    way_out = f"ingest into another index (--index NEW_NAME) or remove this one (`docent drop-index {name}`)"
    if existing.embedding_dim != asked.embedding_dim:
        raise IndexMismatch(
            f"index {name!r} holds {existing.embedding_dim}-dimensional vectors from {existing.embedding_model!r}; "
            f"{asked.embedding_model!r} makes {asked.embedding_dim}-dimensional ones: {way_out}"
        )
    differences = [
        f"{key} {_shown(getattr(existing, key))} (asked {_shown(getattr(asked, key))})"
        for key in ("embedding_model", "chunk_size", "chunk_overlap", "chunk_unit", "include_titles", "url_style")
        if getattr(existing, key) != getattr(asked, key)
    ]
    if differences:
        raise IndexMismatch(f"index {name!r} was built with {', '.join(differences)}: {way_out}")
