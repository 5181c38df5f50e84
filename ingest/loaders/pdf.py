"""PDF → one section per page, linked as `#page=N` (what browsers' PDF viewers open at)."""

from __future__ import annotations

import io

from pypdf import PasswordType, PdfReader
from pypdf.errors import DependencyError

from docent.types import ParsedDocument, Section, UnreadableDocument
from ingest.loaders.base import normalise


def parse(data: bytes, *, stem: str) -> ParsedDocument:
    pages, title = _read(data)
    doc_title = title or stem
    sections = [
        Section(title=f"{doc_title} — page {number}", text=text, anchor=f"page={number}")
        for number, text in enumerate(pages, start=1)
        if text
    ]
    if not sections:
        raise UnreadableDocument("no extractable text (scanned PDF?)")
    return ParsedDocument(title=doc_title, sections=sections)


def _read(data: bytes) -> tuple[list[str], str]:
    """Each page's text and the metadata title ('' if none)."""
    # The header may follow some junk, but must come within the first 1 KiB.
    if b"%PDF-" not in data[:1024]:
        raise UnreadableDocument("not a PDF (no %PDF- header)")
    try:
        reader = PdfReader(io.BytesIO(data))
        # Many PDFs are encrypted only to restrict printing or copying, with an empty
        # password for reading, which every viewer opens silently; so do we.
        if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
            raise UnreadableDocument("encrypted PDF (needs a password)")
        pages = [normalise(page.extract_text() or "") for page in reader.pages]
        title = reader.metadata.title if reader.metadata is not None else None
    except UnreadableDocument:
        raise
    except DependencyError as exc:  # AES needs the optional `cryptography` package
        raise UnreadableDocument(f"encrypted PDF ({exc})"[:200]) from None
    except Exception as exc:  # noqa: BLE001 - pypdf fails on damaged files in too many ways to list
        raise UnreadableDocument(f"malformed PDF: {type(exc).__name__}: {exc}"[:200]) from None
    return pages, title.strip() if isinstance(title, str) else ""
