"""Jupyter notebooks (nbformat 4) → sections: markdown cells give the headings, code
cells' source joins the section it sits in, outputs are left out (they are results, often
large, and rarely what a question is about)."""

from __future__ import annotations

import json
from typing import Any

from docent.types import ParsedDocument, UnreadableDocument
from ingest.loaders.base import DocumentBuilder, ReadInclude
from ingest.loaders.directives import HIDDEN_TAGS
from ingest.loaders.markdown import MarkdownReader


def parse(
    text: str, *, stem: str, anchor_style: str = "sphinx", read_include: ReadInclude | None = None
) -> ParsedDocument:
    builder = DocumentBuilder(anchor_style)
    reader = MarkdownReader(builder, read_include)
    for cell in _cells(text):
        source = _source(cell)
        if cell["cell_type"] == "markdown":
            reader.read(source.split("\n"), titles=True)
        elif cell["cell_type"] == "code" and not HIDDEN_TAGS & _tags(cell):
            builder.lines(source.split("\n"))
        builder.line("")  # cells are separate blocks
    return builder.build(fallback_title=stem)


def _cells(text: str) -> list[dict[str, Any]]:
    """The notebook's cells, or UnreadableDocument if the text is not a v4 notebook."""
    try:
        notebook = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise UnreadableDocument(f"malformed notebook JSON: {exc}") from None
    if not isinstance(notebook, dict) or not isinstance(notebook.get("cells"), list):
        raise UnreadableDocument("not a Jupyter notebook (no list of cells)")
    if notebook.get("nbformat") != 4:
        raise UnreadableDocument(f"unsupported notebook format {notebook.get('nbformat')!r} (need 4)")
    cells = notebook["cells"]
    if not all(isinstance(cell, dict) and isinstance(cell.get("cell_type"), str) for cell in cells):
        raise UnreadableDocument("malformed notebook: a cell without a cell_type")
    return cells


def _tags(cell: dict[str, Any]) -> set[str]:
    metadata = cell.get("metadata")
    tags = metadata.get("tags") if isinstance(metadata, dict) else None
    return {tag for tag in tags if isinstance(tag, str)} if isinstance(tags, list) else set()


def _source(cell: dict[str, Any]) -> str:
    """A cell's source: nbformat allows one string or a list of line strings."""
    source = cell.get("source", "")
    if isinstance(source, list) and all(isinstance(part, str) for part in source):
        return "".join(source).replace("\r\n", "\n").replace("\r", "\n")
    if isinstance(source, str):
        return source.replace("\r\n", "\n").replace("\r", "\n")
    raise UnreadableDocument("malformed notebook: a cell source that is not text")
