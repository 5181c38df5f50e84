"""What every loader shares: decoding, whitespace rules and turning headings into sections."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from docent.types import ParsedDocument, Section, UnreadableDocument
from ingest.anchors import AnchorAllocator

# Resolves a path as written in an include directive to that file's text (None: not found).
ReadInclude = Callable[[str], str | None]

_BINARY_PROBE = 8192
_BLANK_RUNS = re.compile(r"\n{3,}")


def decode_text(data: bytes) -> str:
    """UTF-8 text with `\\n` line ends, or UnreadableDocument for anything else."""
    if b"\x00" in data[:_BINARY_PROBE]:
        raise UnreadableDocument("binary content (NUL bytes), not text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnreadableDocument(f"not UTF-8 text (bad byte at offset {exc.start})") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def normalise(text: str) -> str:
    """Trailing spaces off, at most one blank line in a row, no blank edges.

    Leading indentation stays: it is what makes code readable.
    """
    lines = [line.rstrip() for line in text.split("\n")]
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip("\n")


@dataclass
class _Draft:
    title: str | None
    anchor: str | None
    level: int
    lines: list[str] = field(default_factory=list)


class DocumentBuilder:
    """Collects headings, labels and body lines in reading order; builds the document.

    Each section keeps only its own body: text up to the next heading of any level, which
    in a flat markup is exactly the text not inside a nested subsection.
    """

    def __init__(self, anchor_style: str = "sphinx"):
        self._anchors = AnchorAllocator(anchor_style)
        self._drafts = [_Draft(title=None, anchor=None, level=0)]
        self._labels: list[str] = []

    def label(self, name: str) -> None:
        """An explicit target (`.. _x:`, `(x)=`); it names the next heading if one follows."""
        anchor = self._anchors.label(name)
        if anchor:
            self._labels.append(anchor)

    def reserve(self, name: str) -> None:
        """Another element the renderer gives an id from a name (a named hyperlink)."""
        self._anchors.label(name)

    def heading(self, level: int, title: str, id_text: str | None = None) -> None:
        """Start a section; `id_text` is the title as the renderer sees it, if different."""
        anchor = self._anchors.section(id_text if id_text is not None else title, self._labels)
        self._labels = []
        self._drafts.append(_Draft(title=" ".join(title.split()), anchor=anchor, level=level))

    @property
    def level(self) -> int:
        """The level of the section being written (0 before the first heading)."""
        return self._drafts[-1].level

    def line(self, text: str) -> None:
        """A line of body text; text between a label and a heading detaches the label."""
        if text.strip():
            self._labels = []
        self._drafts[-1].lines.append(text)

    def lines(self, texts: Iterable[str]) -> None:
        for text in texts:
            self.line(text)

    def build(self, fallback_title: str) -> ParsedDocument:
        headed = [d for d in self._drafts if d.title is not None]
        top = min((d.level for d in headed), default=0)
        page_title = next((d.title for d in headed if d.level == top and d.title), fallback_title)
        sections = []
        for draft in self._drafts:
            text = normalise("\n".join(draft.lines))
            if text:
                title = draft.title if draft.title is not None else page_title
                sections.append(Section(title=title, text=text, anchor=draft.anchor))
        return ParsedDocument(title=page_title, sections=sections)
