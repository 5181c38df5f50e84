"""reStructuredText (as written for Sphinx) → sections of plain text.

A line-based reader rather than docutils itself: docutils needs every Sphinx extension's
directives and roles registered to parse a page at all, and is an order of magnitude
slower. The reader follows docutils' rules where they decide what a reader sees: what
counts as a section title, which blocks are directives, comments or literal text.
"""

from __future__ import annotations

import re
from functools import partial

from docent.types import ParsedDocument
from ingest.loaders import directives
from ingest.loaders.base import DocumentBuilder, ReadInclude

# docutils' section adornment: one 7-bit punctuation character, repeated.
_ADORNMENT = re.compile(r"^([!-/:-@\[-`{-~])\1*[ \t]*$")
_EXPLICIT = re.compile(r"^\.\.(?:[ \t]|$)")
_TARGET = re.compile(r"^\.\.[ \t]+_(`[^`]+`|(?:[^:\\`]|\\.)+):(.*)$")
_SUBSTITUTION = re.compile(r"^\.\.[ \t]+\|[^|]+\|")
_FOOTNOTE = re.compile(r"^\.\.[ \t]+\[[^\]]+\](?:[ \t]+(.*))?$")
_DIRECTIVE = re.compile(r"^\.\.[ \t]+([A-Za-z0-9](?:[\w.+:-]*\w)?)[ \t]?::(?:[ \t]+(.*))?$")
# A title is a paragraph of its own; these lines start some other construct.
_NOT_A_TITLE = re.compile(r"^(?:[-*+•‣⁃][ \t]|\.\.(?:[ \t]|$)|\||>>>|:[\w.-]+:(?:[ \t]|$))")
_TABLE_BORDER = re.compile(r"^[ \t]*(?:\+(?:[-=]+\+)+|=+(?:[ \t]+=+)+)[ \t]*$")
_METADATA = re.compile(r"^:(?:orphan|nosearch|tocdepth|html_theme\.[\w.]+):")
# Spans are bounded (a paragraph's worth) so that openers without a closer cost linear time.
_INLINE = re.compile(
    r"""``(?P<literal>.{1,1000}?)``(?!`)
      | (?::[\w.+:-]+:)?`(?P<interp>(?:[^`\\]|\\.){1,1000}?)`(?::[\w.+:-]+:|__?)?
      | \*\*(?P<strong>[^*\s](?:.{0,1000}?[^*\s])?)\*\*
      | (?<![\w*])\*(?P<em>[^*\s](?:[^*]{0,1000}?[^*\s])?)\*(?![\w*])
      | \|(?P<subst>[^|\s](?:[^|]{0,200}?[^|\s])?)\|(?:__?)?
      | [ \t]?\[(?:\#[\w-]*|\*|\d+)\]_
      | \\(?P<escaped>.)""",
    re.VERBOSE | re.DOTALL,
)
_EMBEDDED_TARGET = re.compile(r"^(.*?)\s*<([^<>]+)>$", re.DOTALL)
# `text <url>`_ defines a hyperlink target named "text"; docutils gives it an id.
_NAMED_LINK = re.compile(r"(?<![:`\w])`([^`<]*[^`<\s])\s*<[^<>`]+>`_(?!_)")


def parse(
    text: str, *, stem: str, anchor_style: str = "sphinx", read_include: ReadInclude | None = None
) -> ParsedDocument:
    builder = DocumentBuilder(anchor_style)
    RstReader(builder, read_include).read(text.split("\n"), titles=True)
    return builder.build(fallback_title=stem)


def inline_text(text: str) -> str:
    """Text with its inline markup resolved to the words a reader sees."""
    return _INLINE.sub(_resolve_inline, text)


def _resolve_inline(match: re.Match[str]) -> str:
    groups = match.groupdict()
    if groups["literal"] is not None:
        return groups["literal"]
    if groups["interp"] is not None:
        return _interpreted(groups["interp"])
    for name in ("strong", "em", "subst", "escaped"):
        if groups[name] is not None:
            return groups[name]
    return ""  # a footnote reference


def _interpreted(text: str) -> str:
    """`text <target>`, `~mod.Class`, `!name` → what Sphinx shows (with ~ kept in full)."""
    embedded = _EMBEDDED_TARGET.match(text)
    if embedded:
        text = embedded.group(1) or embedded.group(2)
    return text.lstrip("~!").replace("\\", "")


class RstReader:
    """Feeds a builder from reST lines; directive bodies are read recursively."""

    def __init__(self, builder: DocumentBuilder, read_include: ReadInclude | None, base_level: int = 0):
        self._builder = builder
        self._read_include = read_include
        self._base_level = base_level  # titles nest under this level (rst inside MyST)
        self._styles: list[tuple[str, bool]] = []  # adornment styles, in order of first use

    def read(self, lines: list[str], *, titles: bool) -> None:
        """Read a block whose lines are dedented; titles only count at the top level."""
        paragraph: list[str] = []  # inline markup may span lines, so it is read per paragraph
        literal_next = False  # the last paragraph ended in "::": indented text is code
        i = 0
        while i < len(lines):
            line = lines[i]
            if not line.strip():
                self._flush(paragraph)
                self._builder.line("")
                i += 1
                continue
            if line[0] not in " \t" and not _EXPLICIT.match(line) and not line.startswith(">>>"):
                # A title cannot continue a paragraph.
                if titles and not paragraph and (length := self._title_at(lines, i)):
                    i += length
                else:
                    literal_next = line.rstrip().endswith("::")
                    paragraph.append(line)
                    i += 1
                continue
            self._flush(paragraph)
            if line[0] in " \t":
                end = _block_end(lines, i)
                block = _dedent(lines[i:end])
                if literal_next:
                    self._builder.lines(block)
                else:
                    self.read(block, titles=False)
            elif _EXPLICIT.match(line):
                end = _block_end(lines, i + 1)
                self._explicit(line, lines[i + 1 : end])
            else:
                end = _paragraph_end(lines, i)
                self._builder.lines(lines[i:end])  # a doctest block is code
            i, literal_next = end, False
        self._flush(paragraph)

    def _title_at(self, lines: list[str], i: int) -> int:
        """Record the section title starting at line i; returns its line count (0: none)."""
        found = _title(lines, i)
        if not found:
            return 0
        title, style, length = found
        if style not in self._styles:
            self._styles.append(style)
        self._builder.heading(self._base_level + self._styles.index(style) + 1, inline_text(title))
        return length

    def _flush(self, paragraph: list[str]) -> None:
        """Emit a paragraph's lines as plain text and empty the buffer."""
        kept = [_line_text(line) for line in paragraph if not _TABLE_BORDER.match(line) and not _METADATA.match(line)]
        paragraph.clear()
        text = "\n".join(kept).rstrip()
        if text.endswith("::"):
            # "Example::" shows "Example:"; a lone or spaced "::" shows nothing.
            text = text[:-1] if text[-3:-2] not in ("", " ", "\t", "\n") else text[:-2]
        for name in _NAMED_LINK.findall(text):
            self._builder.reserve(" ".join(name.split()))
        if text:
            self._builder.lines(inline_text(text).split("\n"))

    def _explicit(self, line: str, body: list[str]) -> None:
        """`..` markup: a label, directive, footnote, substitution or a comment."""
        if target := _TARGET.match(line):
            name = target.group(1).strip("`").replace("\\", "")
            if target.group(2).strip() or any(b.strip() for b in body):
                if name != "_":  # a link definition: not shown, but it has an id
                    self._builder.reserve(name)
            else:
                self._builder.label(name)
            return
        if _SUBSTITUTION.match(line):
            return
        if footnote := _FOOTNOTE.match(line):
            self.read([footnote.group(1) or "", *_dedent(body)], titles=False)
            return
        if directive := _DIRECTIVE.match(line):
            self._directive(directive.group(1), (directive.group(2) or "").strip(), _dedent(body))
        # anything else is a comment

    def _directive(self, name: str, argument: str, body: list[str]) -> None:
        options, content = directives.split_options(body)
        directives.render(
            self._builder,
            name,
            argument,
            options,
            _dedent(content),
            inline=inline_text,
            read_body=partial(self.read, titles=False),
            read_include=self._read_include,
        )


def _line_text(line: str) -> str:
    """A line block's line ("| text") shows as the text; line breaks we keep anyway."""
    if line.startswith("|") and (len(line) == 1 or line[1] in " \t"):
        return line[2:]
    return line


def _title(lines: list[str], i: int) -> tuple[str, tuple[str, bool], int] | None:
    """(title, adornment style, line count) of a section title at line i, if one is."""
    line = lines[i]
    if _ADORNMENT.match(line) and i + 2 < len(lines):
        text, under = lines[i + 1], lines[i + 2]
        if text.strip() and _ADORNMENT.match(under) and under[0] == line[0] and not _ADORNMENT.match(text):
            return text.strip(), (line[0], True), 3
    if i + 1 < len(lines) and not _ADORNMENT.match(line) and not _NOT_A_TITLE.match(line):
        under = lines[i + 1].rstrip()
        # docutils reads a short underline (< 4 characters) as text; a longer one as a
        # title even if it is shorter than the title (with a warning).
        if _ADORNMENT.match(under) and (len(under) >= 4 or len(under) >= len(line.rstrip())):
            return line.strip(), (under[0], False), 2
    return None


def _block_end(lines: list[str], start: int) -> int:
    """End of the indented block from `start`: before the next non-blank line at column 0,
    leaving out trailing blank lines (they separate what follows)."""
    end = i = start
    while i < len(lines) and (not lines[i].strip() or lines[i][0] in " \t"):
        i += 1
        if lines[i - 1].strip():
            end = i
    return end


def _paragraph_end(lines: list[str], start: int) -> int:
    i = start
    while i < len(lines) and lines[i].strip():
        i += 1
    return i


def _dedent(lines: list[str]) -> list[str]:
    """Remove the common indentation; tabs count as 8 columns, as docutils has it."""
    lines = [line.expandtabs(8) for line in lines]
    indents = [len(line) - len(line.lstrip()) for line in lines if line.strip()]
    cut = min(indents, default=0)
    return [line[cut:] for line in lines]
