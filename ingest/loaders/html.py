"""HTML pages as a Sphinx site serves them → sections of plain text.

Sphinx wraps every section in `<section id=…>` (older themes: `<div class="section">`),
so those ids are exactly the anchors a reader can link to. Other HTML is split at its
h1–h6 headings instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bs4 import BeautifulSoup, NavigableString, Tag
from bs4.element import CData, Comment, Declaration, Doctype, ProcessingInstruction

from docent.types import ParsedDocument, Section
from ingest.loaders.base import ReadInclude, normalise

# The page's own content, innermost wrapper first; the rest is theme chrome.
_MAIN = ("[role=main]", "article", "div.body", "main", "div.document", "body")
_CHROME = (
    "script, style, nav, header, footer, aside, form, noscript, template, button, a.headerlink, a.hash-link,"
    " .theme-doc-toc-mobile"
)
_HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")
_LINE_BLOCKS = {"li", "dt", "dd", "tr", "caption", "figcaption", *_HEADINGS}
_PARAGRAPH_BLOCKS = {
    "p", "div", "ul", "ol", "dl", "table", "blockquote", "section", "article",
    "figure", "hr", "details", "summary", "main", "body",
}  # fmt: skip
_NOT_TEXT = (Comment, Doctype, ProcessingInstruction, Declaration, CData)


def parse(
    text: str, *, stem: str, anchor_style: str = "sphinx", read_include: ReadInclude | None = None
) -> ParsedDocument:
    """`anchor_style` and `read_include` are unused: an HTML page has its ids and code inline."""
    soup = BeautifulSoup(text, "lxml")
    main = _main_content(soup)
    if main is None:
        return ParsedDocument(title=stem)
    for chrome in main.select(_CHROME):
        if chrome.name == "header" and chrome.find("h1") is not None:
            chrome.unwrap()  # Docusaurus puts the page's title in a <header> of its own content
        else:
            chrome.decompose()
    first_h1 = main.find("h1")
    page_title = (_plain(first_h1) if first_h1 is not None else "") or stem
    walker = _Walker(by_section=main.find(_is_section) is not None)
    walker.visit(main)
    return walker.document(page_title)


def _main_content(soup: BeautifulSoup) -> Tag | None:
    for selector in _MAIN:
        found = soup.select_one(selector)
        if found is not None:
            return found
    return soup if soup.contents else None


def _is_section(tag: Tag) -> bool:
    if not tag.get("id"):
        return False
    return tag.name == "section" or (tag.name == "div" and "section" in tag.get("class", []))


def _plain(tag: Tag) -> str:
    return " ".join(tag.get_text().split())


@dataclass
class _Draft:
    title: str | None
    anchor: str | None
    lines: list[str] = field(default_factory=list)
    inline: list[str] = field(default_factory=list)

    def end_line(self, blank: bool = False) -> None:
        text = " ".join("".join(self.inline).split())
        self.inline.clear()
        if text:
            self.lines.append(text)
        if blank:
            self.lines.append("")


class _Walker:
    """Walks the content in document order; text goes to the innermost open section.

    Unlike in a source file, a section's own text may continue after a nested section
    closes, so open sections are kept on a stack.
    """

    def __init__(self, by_section: bool):
        self._by_section = by_section
        self._drafts = [_Draft(title=None, anchor=None)]
        self._open = [self._drafts[0]]

    def visit(self, node: Tag) -> None:
        for child in node.children:
            if isinstance(child, NavigableString):
                if not isinstance(child, _NOT_TEXT):
                    self._open[-1].inline.append(str(child))
            elif not isinstance(child, Tag):
                continue
            elif self._by_section and _is_section(child):
                self._section(child)
            elif not self._by_section and child.name in _HEADINGS:
                self._heading(child)
            elif child.name == "pre":
                self._open[-1].end_line()
                self._open[-1].lines.extend([*child.get_text().split("\n"), ""])
            elif child.name == "br":
                self._open[-1].end_line()
            else:
                self._block(child)

    def _block(self, tag: Tag) -> None:
        is_line = tag.name in _LINE_BLOCKS
        is_paragraph = tag.name in _PARAGRAPH_BLOCKS
        if is_line or is_paragraph:
            self._open[-1].end_line()
        elif tag.name in ("td", "th"):
            self._open[-1].inline.append(" ")
        self.visit(tag)
        if is_line or is_paragraph:
            self._open[-1].end_line(blank=is_paragraph)

    def _section(self, tag: Tag) -> None:
        heading = _own_heading(tag)
        title = None
        if heading is not None:
            title = _plain(heading)
            heading.extract()  # the title is not part of the section's text
        draft = _Draft(title=title, anchor=str(tag["id"]))
        self._open[-1].end_line()
        self._drafts.append(draft)
        self._open.append(draft)
        self.visit(tag)
        draft.end_line()
        self._open.pop()

    def _heading(self, tag: Tag) -> None:
        self._open[-1].end_line()
        draft = _Draft(title=_plain(tag), anchor=_heading_anchor(tag))
        self._drafts.append(draft)
        self._open[-1] = draft

    def document(self, page_title: str) -> ParsedDocument:
        self._open[-1].end_line()
        sections = []
        for draft in self._drafts:
            text = normalise("\n".join(draft.lines))
            if text:
                sections.append(Section(title=draft.title or page_title, text=text, anchor=draft.anchor))
        return ParsedDocument(title=page_title, sections=sections)


def _own_heading(section: Tag) -> Tag | None:
    """The section's title: its first heading, unless that belongs to a nested section."""
    heading = section.find(_HEADINGS)
    return heading if heading is not None and heading.find_parent(_is_section) is section else None


def _heading_anchor(heading: Tag) -> str | None:
    """A heading's id, else that of an anchor inside it, around it or just before it."""
    if heading.get("id"):
        return str(heading["id"])
    inner = heading.find(lambda t: t.name == "a" and (t.get("id") or t.get("name")))
    if inner is not None:
        return str(inner.get("id") or inner.get("name"))
    parent = heading.parent
    if isinstance(parent, Tag) and parent.get("id") and parent.find(True) is heading:
        return str(parent["id"])
    previous = heading.find_previous_sibling(True)
    if previous is not None and (previous.get("id") or previous.get("name")) and not previous.get_text(strip=True):
        return str(previous.get("id") or previous.get("name"))
    return None
