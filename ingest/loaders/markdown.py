"""Markdown, including the MyST dialect Sphinx sites use, → sections of plain text."""

from __future__ import annotations

import html
import re
from functools import partial

from docent.types import ParsedDocument
from ingest.loaders import directives
from ingest.loaders.base import DocumentBuilder, ReadInclude
from ingest.loaders.rst import RstReader

_FENCE = re.compile(r"^([ \t]*)(`{3,}|~{3,}|:{3,})(.*)$")
_DIRECTIVE_INFO = re.compile(r"^\{([\w.:+-]+)\}[ \t]*(.*)$")
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_MYST_TARGET = re.compile(r"^[ \t]*\((.+)\)=[ \t]*$")
# A setext heading underlines a one-line paragraph; these lines are something else.
_NOT_PARAGRAPH = re.compile(r"^(?: {4}|\t|[ \t]*(?:[-*+][ \t]|\d+[.)][ \t]|>|\||<|#|%))")
_DROPPED_LINE = re.compile(
    r"""^[ \t]*(?:%.*                               # MyST comment
              | \+\+\+.*                            # MyST block break
              | \[[^\]^]+\]:[ \t]+\S.*              # link reference definition
              | \|?[ \t]*:?-{3,}:?[ \t]*(?:\|[ \t]*:?-{3,}:?[ \t]*)+\|?   # table rule
              )$""",
    re.VERBOSE,
)
# Spans are bounded (a paragraph's worth) so that openers without a closer cost linear time.
_INLINE = re.compile(
    r"""\{(?P<role>[\w.:+-]+)\}(?P<rticks>`+)(?P<rtext>.{1,1000}?)(?P=rticks)
      | (?P<ticks>`+)(?P<code>.{1,1000}?)(?P=ticks)(?!`)
      | !\[(?:[^\[\]]|\[[^\[\]]*\]){0,1000}\](?:\([^()]*\)|\[[^\[\]]*\])
      | \[(?P<link>(?:[^\[\]\\]|\\.|!?\[[^\[\]]*\](?:\([^()]*\))?){0,1000})\]
        (?:\((?:[^()\s]|\([^()]*\)){0,2000}(?:[ \t]+"[^"]*")?\)|\[[^\[\]]*\])
      | \[\^[^\[\]]+\]
      | \*\*(?P<strong>[^*\s](?:.{0,1000}?[^*\s])?)\*\*
      | (?<![\w*])\*(?P<em>[^*\s](?:[^*]{0,1000}?[^*\s])?)\*(?![\w*])
      | (?<!\w)__(?P<strong_>[^_\s](?:.{0,1000}?[^_\s])?)__(?!\w)
      | (?<!\w)_(?P<em_>[^_\s](?:[^_]{0,1000}?[^_\s])?)_(?!\w)
      | <(?P<autolink>[a-z][\w+.-]*:[^<>\s]+)>
      | (?P<tag></?[A-Za-z][\w:-]*(?:\s[^<>]*)?/?>)
      | \\(?P<escaped>[!-/:-@\[-`{-~])""",
    re.VERBOSE | re.DOTALL,
)
_ROLE_TARGET = re.compile(r"^(.*?)\s*<([^<>]+)>$", re.DOTALL)
_HTML_COMMENT = re.compile(r"<!--.*?(?:-->|$)", re.DOTALL)


def parse(
    text: str, *, stem: str, anchor_style: str = "sphinx", read_include: ReadInclude | None = None
) -> ParsedDocument:
    builder = DocumentBuilder(anchor_style)
    MarkdownReader(builder, read_include).read(_without_front_matter(text.split("\n")), titles=True)
    return builder.build(fallback_title=stem)


def inline_text(text: str, *, keep_html: bool = False) -> str:
    """Text with its inline markup resolved to the words a reader sees.

    `keep_html` keeps inline HTML tags: docutils makes a heading's id from its text with
    any raw HTML in it, so `## Train <a name="x"></a>` links as `#train-a-name-x-a`.
    """
    resolved = _INLINE.sub(lambda m: _resolve_inline(m, keep_html), text)
    return html.unescape(resolved) if "&" in resolved else resolved


def _resolve_inline(match: re.Match[str], keep_html: bool) -> str:
    groups = match.groupdict()
    if groups["rtext"] is not None:
        target = _ROLE_TARGET.match(groups["rtext"])
        shown = (target.group(1) or target.group(2)) if target else groups["rtext"]
        return shown.lstrip("~!")
    for name in ("link", "strong", "em", "strong_", "em_"):  # these may hold more markup
        if groups[name] is not None:
            return inline_text(groups[name], keep_html=keep_html)
    if groups["tag"] is not None:
        return groups["tag"] if keep_html else ""
    for name in ("code", "autolink", "escaped"):
        if groups[name] is not None:
            return groups[name]
    return ""  # an image or a footnote reference


def _without_front_matter(lines: list[str]) -> list[str]:
    if lines and lines[0].rstrip() == "---":
        for i in range(1, len(lines)):
            if lines[i].rstrip() in ("---", "..."):
                return lines[i + 1 :]
    return lines


class MarkdownReader:
    """Feeds a builder from Markdown lines; directive bodies are read recursively."""

    def __init__(self, builder: DocumentBuilder, read_include: ReadInclude | None):
        self._builder = builder
        self._read_include = read_include

    def read(self, lines: list[str], *, titles: bool) -> None:
        """Read a block of lines; headings only make sections at the top level."""
        lines = list(lines)  # comments are cut out in place
        paragraph: list[str] = []  # inline markup may span lines, so it is read per paragraph
        i = 0
        while i < len(lines):
            line = lines[i]
            if "<!--" in line:
                _drop_comment(lines, i)
                continue
            fence = _FENCE.match(line)
            if fence and not (fence.group(2)[0] == "`" and "`" in fence.group(3)):
                self._flush(paragraph)
                i = self._fenced(lines, i, fence)
            elif length := self._heading_at(lines, i, paragraph, titles):
                i += length
            elif not line.strip():
                self._flush(paragraph)
                self._builder.line("")
                i += 1
            else:
                if not _DROPPED_LINE.match(line):
                    paragraph.append(line)
                i += 1
        self._flush(paragraph)

    def _flush(self, paragraph: list[str]) -> None:
        """Emit a paragraph's lines as plain text and empty the buffer."""
        if paragraph:
            self._builder.lines(inline_text("\n".join(paragraph)).split("\n"))
            paragraph.clear()

    def _heading_at(self, lines: list[str], i: int, paragraph: list[str], titles: bool) -> int:
        """Record a heading or MyST target at line i; returns the lines it takes (0: none)."""
        line = lines[i]
        if target := _MYST_TARGET.match(line):
            self._flush(paragraph)
            self._builder.label(target.group(1))
            return 1
        if (atx := _ATX.match(line)) and atx.group(2):
            self._flush(paragraph)
            self._heading(len(atx.group(1)), atx.group(2), titles)
            return 1
        # A setext underline makes a heading of a one-line paragraph.
        starts_paragraph = not paragraph and line.strip() and not _NOT_PARAGRAPH.match(line)
        if starts_paragraph and i + 1 < len(lines) and (setext := _SETEXT.match(lines[i + 1])):
            self._heading(1 if setext.group(1)[0] == "=" else 2, line.strip(), titles)
            return 2
        return 0

    def _heading(self, level: int, raw: str, titles: bool) -> None:
        """A section; inside a directive, where Sphinx allows none, just a line of text."""
        title = " ".join(inline_text(raw).split())
        if not titles:
            self._builder.line(title)
        elif title:
            self._builder.heading(level, title, id_text=" ".join(inline_text(raw, keep_html=True).split()))

    def _fenced(self, lines: list[str], start: int, fence: re.Match[str]) -> int:
        """Read a fenced block (code or a MyST directive); returns the line after it."""
        indent, marker, info = len(fence.group(1)), fence.group(2), fence.group(3).strip()
        end = start + 1
        while end < len(lines) and not _closes(lines[end], marker):
            end += 1
        body = [_unindent(line, indent) for line in lines[start + 1 : end]]
        directive = _DIRECTIVE_INFO.match(info)
        if directive:
            self._directive(directive.group(1), directive.group(2).strip(), body)
        elif marker[0] == ":":
            self.read(body, titles=False)  # a colon fence without a name is a container
        else:
            self._builder.lines(body)
        return end + 1

    def _directive(self, name: str, argument: str, body: list[str]) -> None:
        options, content = _myst_options(body)
        if name == "eval-rst":
            # reStructuredText, whose titles MyST lets make sections under the current one.
            rst_reader = RstReader(self._builder, self._read_include, base_level=self._builder.level)
            read_body = partial(rst_reader.read, titles=True)
        else:
            read_body = partial(self.read, titles=False)
        directives.render(
            self._builder,
            name,
            argument,
            options,
            content,
            inline=inline_text,
            read_body=read_body,
            read_include=self._read_include,
        )


def _closes(line: str, marker: str) -> bool:
    stripped = line.strip()
    return len(stripped) >= len(marker) and stripped == stripped[0] * len(stripped) and stripped[0] == marker[0]


def _unindent(line: str, indent: int) -> str:
    """Drop up to `indent` leading spaces: a fence's content is relative to the fence."""
    stripped = line.lstrip(" ")
    return line[min(indent, len(line) - len(stripped)) :]


def _myst_options(body: list[str]) -> tuple[dict[str, str], list[str]]:
    """A MyST directive's options: a `---` YAML block or `:name: value` lines, then content."""
    if body and body[0].strip() == "---":
        for end in range(1, len(body)):
            if body[end].strip() == "---":
                options = {}
                for line in body[1:end]:
                    key, sep, value = line.partition(":")
                    if sep and not key[:1].isspace():
                        options[key.strip().lower()] = value.strip()
                return options, body[end + 1 :]
    return directives.split_options(body)


def _drop_comment(lines: list[str], i: int) -> None:
    """Cut the HTML comment that opens on line i (it may span lines) out of `lines`."""
    end = i
    tail = lines[i][lines[i].find("<!--") + 4 :]
    while "-->" not in tail and end < len(lines) - 1:
        end += 1
        tail = lines[end]
    joined = _HTML_COMMENT.sub("", "\n".join(lines[i : end + 1]), count=1)
    lines[i : end + 1] = joined.split("\n")
