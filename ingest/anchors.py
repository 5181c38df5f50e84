"""Fragment ids and URLs for the sections a loader finds.

A chunk's source link is only useful if it lands where the reader's browser would: the
anchors here reproduce what the site generator writes into the HTML, not a guess of ours.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from docutils.nodes import make_id

from docent.types import AnchorStyle, UrlStyle

ANCHOR_STYLES = ("sphinx", "github")

_GITHUB_DROP = re.compile(r"[^\w\- ]")
# A PDF is served as itself; every other format is rendered to an HTML page.
_SERVED_AS_IS = {".pdf", ".txt"}
_FOLDER_PAGES = {"index", "readme", "_index"}  # a folder's own page, published as the folder


def slugify(title: str, style: str = "sphinx") -> str:
    """The fragment id a renderer derives from a heading (or a label) text."""
    if style == AnchorStyle.SPHINX:
        return make_id(title)
    if style == AnchorStyle.GITHUB:
        return _GITHUB_DROP.sub("", title.strip().lower()).replace(" ", "-")
    raise ValueError(f"unknown anchor style {style!r}; expected one of {ANCHOR_STYLES}")


def page_url(relpath: str, *, base_url: str | None, root: Path, style: UrlStyle = UrlStyle.HTML) -> str:
    """The URL a source file is published at: under base_url as the site's `style` has it, else the file itself."""
    if base_url is None:
        return (root / relpath).resolve().as_uri()
    path = PurePosixPath(relpath.replace("\\", "/").lstrip("/"))
    base = base_url.rstrip("/")
    if path.suffix.lower() in _SERVED_AS_IS:
        return f"{base}/{path.as_posix()}"
    if style == UrlStyle.HTML:
        return f"{base}/{path.with_suffix('.html').as_posix()}"
    page = path.with_suffix("")
    if style == UrlStyle.DIRECTORY:
        folder = page.parent if page.name.lower() in _FOLDER_PAGES else page
        return f"{base}/{folder.as_posix()}/".replace("/./", "/")
    return f"{base}/{page.as_posix()}"


def source_url(page: str, anchor: str | None) -> str:
    return f"{page}#{anchor}" if anchor else page


class AnchorAllocator:
    """Hands out a document's section ids, unique the way the renderer makes them.

    Sphinx (docutils) gives a section the slug of its title unless that id is already
    taken in the page (by an earlier section, a label such as `.. _foo:` or a named
    hyperlink), and then falls back to a numbered `id1`, `id2`…; a label directly above
    the section is an id of that section too, so it is the steadier link in that case.
    GitHub numbers repeats as `slug-1`, `slug-2` and knows nothing of labels.
    """

    def __init__(self, style: str = "sphinx"):
        if style not in ANCHOR_STYLES:
            raise ValueError(f"unknown anchor style {style!r}; expected one of {ANCHOR_STYLES}")
        self.style = style
        self._taken: set[str] = set()
        self._auto_ids = 0
        self._repeats: defaultdict[str, int] = defaultdict(int)

    def label(self, name: str) -> str | None:
        """Reserve the id of an explicit label; returns it (None where labels mean nothing)."""
        if self.style != "sphinx":
            return None
        anchor = slugify(name, "sphinx")
        if not anchor or anchor in self._taken:
            return self._next_auto_id()
        self._taken.add(anchor)
        return anchor

    def section(self, title: str, labels: Sequence[str] = ()) -> str | None:
        """The id of a section titled `title`, given the label ids directly above it."""
        slug = slugify(title, self.style)
        if slug and slug not in self._taken:
            self._taken.add(slug)
            return slug
        if self.style == AnchorStyle.GITHUB:
            return self._next_repeat(slug) if slug else None
        # The section (or, in newer Sphinx, its label) still uses up a numbered id.
        numbered = self._next_auto_id()
        return labels[0] if labels else numbered

    def _next_auto_id(self) -> str:
        while True:
            self._auto_ids += 1
            anchor = f"id{self._auto_ids}"
            if anchor not in self._taken:
                self._taken.add(anchor)
                return anchor

    def _next_repeat(self, slug: str) -> str:
        while True:
            self._repeats[slug] += 1
            anchor = f"{slug}-{self._repeats[slug]}"
            if anchor not in self._taken:
                self._taken.add(anchor)
                return anchor
