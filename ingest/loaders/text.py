"""Plain text: the whole file is one untitled section."""

from __future__ import annotations

from docent.types import ParsedDocument, Section
from ingest.loaders.base import ReadInclude, normalise


def parse(
    text: str, *, stem: str, anchor_style: str = "sphinx", read_include: ReadInclude | None = None
) -> ParsedDocument:
    """`anchor_style` and `read_include` are unused: plain text has neither headings nor includes."""
    body = normalise(text)
    return ParsedDocument(title=stem, sections=[Section(title=stem, text=body)] if body else [])
