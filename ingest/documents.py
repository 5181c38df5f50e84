"""One file → its chunks: read, parse into sections, split. Runs inside Ray Data tasks."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from docent.settings import ChunkingSettings
from docent.types import ChunkUnit, UnreadableDocument, UrlStyle, embedding_text
from ingest.anchors import page_url, source_url
from ingest.loaders import load_document
from ingest.scan import file_hash
from ingest.splitter import RecursiveSplitter, make_splitter


@dataclass(frozen=True)
class ParseOptions:
    root: Path
    base_url: str | None
    anchor_style: str
    chunking: ChunkingSettings
    url_style: UrlStyle
    tokenizer_path: str | None  # needed only for token-sized chunks


def chunk_rows(item: dict[str, Any], options: ParseOptions) -> list[dict[str, Any]]:
    """Rows for one file: one per chunk, or a single row with `error` set when it is skipped.

    Every row carries `n_chunks`, so whoever collects rows knows when a document is
    complete and can write it in one transaction.
    """
    uri = item["uri"]
    path = options.root / uri
    try:
        data = path.read_bytes()
    except OSError as exc:
        return [_skipped(uri, "", f"cannot read: {exc.strerror or exc}")]
    content_hash = file_hash(data)
    try:
        document = load_document(uri, data, anchor_style=options.anchor_style, read_include=_include_reader(options.root, path))
    except UnreadableDocument as exc:
        return [_skipped(uri, content_hash, exc.reason)]

    page = page_url(uri, base_url=options.base_url, root=options.root, style=options.url_style)
    splitter = _splitter(options.chunking, options.tokenizer_path)
    rows = []
    for section in document.sections:
        source = source_url(page, section.anchor)
        for start, end in splitter.split_spans(section.text):
            text = section.text[start:end]
            embedded = embedding_text(document.title, section.title, text) if options.chunking.include_titles else text
            rows.append(
                {"uri": uri, "content_hash": content_hash, "text": text, "embed_text": embedded, "source": source,
                 "section_title": section.title, "page_title": document.title, "sections": len(document.sections),
                 "section_offset": start, "error": ""}
            )
    if not rows:
        return [_skipped(uri, content_hash, "no text")]
    for ordinal, row in enumerate(rows):
        row["ordinal"] = ordinal
        row["n_chunks"] = len(rows)
    return rows


def _skipped(uri: str, content_hash: str, reason: str) -> dict[str, Any]:
    return {"uri": uri, "content_hash": content_hash, "text": "", "embed_text": "", "source": "",
            "section_title": "", "page_title": "", "sections": 0, "section_offset": 0, "error": reason, "ordinal": 0,
            "n_chunks": 0}


def _include_reader(root: Path, document: Path):
    """Resolve include paths as Sphinx does (`/x` from the docs root), never leaving the root."""

    def read(target: str) -> str | None:
        base = root if target.startswith("/") else document.parent
        path = (base / target.lstrip("/")).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            return None
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None

    return read


@lru_cache(maxsize=4)
def _splitter(chunking: ChunkingSettings, tokenizer_path: str | None) -> RecursiveSplitter:
    tokenizer = _tokenizer(tokenizer_path) if chunking.unit == ChunkUnit.TOKENS else None
    return make_splitter(chunking.chunk_size, chunking.chunk_overlap, chunking.unit, tokenizer)


@lru_cache(maxsize=2)
def _tokenizer(path: str | None):
    from transformers import AutoTokenizer

    if path is None:
        raise ValueError("token-sized chunks need the embedding model's tokenizer")
    return AutoTokenizer.from_pretrained(path)
