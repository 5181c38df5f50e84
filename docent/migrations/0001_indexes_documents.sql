-- Indexes (one per embedding model + chunking configuration), their documents, and
-- their persisted BM25 indexes. Each index's chunks live in their own table,
-- chunks_<index id>, created with the index because its vector column has the
-- index's dimension (see docent/store.py).
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE indexes (
    id            serial PRIMARY KEY,
    name          text NOT NULL UNIQUE,
    config        jsonb NOT NULL,
    embedding_dim integer NOT NULL CHECK (embedding_dim > 0),
    revision      bigint NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE documents (
    id           bigserial PRIMARY KEY,
    index_id     integer NOT NULL REFERENCES indexes (id) ON DELETE CASCADE,
    uri          text NOT NULL,
    content_hash text NOT NULL,
    chunk_count  integer NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (index_id, uri)
);

CREATE TABLE lexical_indexes (
    index_id  integer PRIMARY KEY REFERENCES indexes (id) ON DELETE CASCADE,
    revision  bigint NOT NULL,
    backend   text NOT NULL,
    checksum  text NOT NULL,
    payload   bytea NOT NULL,
    built_at  timestamptz NOT NULL DEFAULT now()
);
