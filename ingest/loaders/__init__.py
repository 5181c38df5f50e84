"""Document loaders: bytes of a file in a docs tree → a ParsedDocument of sections.

`load_document` is the only entry point; it picks the parser by file suffix and turns
every way a file can be unusable into UnreadableDocument, so one bad file never stops
an ingest run.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from docent.types import ParsedDocument, UnreadableDocument
from ingest.loaders import html, markdown, notebook, pdf, rst, text
from ingest.loaders.base import ReadInclude, decode_text

__all__ = ["SUPPORTED_SUFFIXES", "ReadInclude", "load_document"]

_TEXT_PARSERS = {
    ".html": html.parse,
    ".htm": html.parse,
    ".md": markdown.parse,
    ".markdown": markdown.parse,
    ".rst": rst.parse,
    ".ipynb": notebook.parse,
    ".txt": text.parse,
}
SUPPORTED_SUFFIXES = frozenset({*_TEXT_PARSERS, ".pdf"})


def load_document(
    relpath: str,
    data: bytes,
    *,
    anchor_style: str = "sphinx",
    read_include: ReadInclude | None = None,
) -> ParsedDocument:
    """Parse one file; `relpath` (its path in the docs tree) only decides format and stem.

    `read_include(path)` returns the text of a file named in a literalinclude directive,
    resolved relative to this document, or None if there is no such file.
    """
    path = PurePosixPath(relpath.replace("\\", "/"))
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise UnreadableDocument(f"unsupported file type {suffix or '(no suffix)'!r}")
    try:
        if suffix == ".pdf":
            document = pdf.parse(data, stem=path.stem)
        else:
            parse = _TEXT_PARSERS[suffix]
            document = parse(decode_text(data), stem=path.stem, anchor_style=anchor_style, read_include=read_include)
    except RecursionError:
        raise UnreadableDocument("markup nested too deeply to read") from None
    if not document.sections:
        raise UnreadableDocument("no text in the document")
    return document
