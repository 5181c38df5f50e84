"""Sphinx directives as a reader sees them; shared by the reStructuredText and MyST loaders.

A directive is either dropped (it renders nothing a reader would search for), shown as
code, an included code file, or a container whose body is ordinary text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from enum import Enum

from ingest.loaders.base import DocumentBuilder, ReadInclude


class Kind(Enum):
    DROP = "drop"
    CODE = "code"
    PARSED_CODE = "parsed-code"  # code with inline markup (links) in it
    INCLUDE = "include"
    TEXT = "text"


_DROPPED = {
    "toctree", "image", "include", "raw", "meta", "contents",
    "currentmodule", "module", "py:module", "py:currentmodule", "highlight", "index",
    "sectionauthor", "codeauthor", "tabularcolumns", "testsetup", "testcleanup",
    "role", "default-role", "title", "click", "youtube", "video", "graphviz", "mermaid",
}  # fmt: skip
_CODE = {
    "code-block", "code", "sourcecode", "testcode", "testoutput", "doctest", "code-cell",
    "jupyter-execute", "ipython", "math", "prompt",
}  # fmt: skip
# Arguments of these are layout or version tokens, not words a reader sees.
_SILENT_ARGUMENTS = {
    "grid", "grid-item", "container", "only", "ifconfig", "rst-class", "class", "tab-set",
    "button-ref", "button-link", "versionadded", "versionchanged", "deprecated", "figure",
    "margin", "query-param-ref", "eval-rst",
}  # fmt: skip

# myst-nb leaves code cells with these tags out of the rendered page.
HIDDEN_TAGS = frozenset({"remove-cell", "remove-input"})

_OPTION = re.compile(r"^:([\w.-]+):(?:\s+(.*))?$")
_LINE_RANGE = re.compile(r"^(\d*)(-?)(\d*)$")


def kind(name: str) -> Kind:
    name = name.lower()
    if name == "literalinclude":
        return Kind.INCLUDE
    # autodoc renders docstrings we do not have; autosummary's list of API names is text.
    if name in _DROPPED or (name.startswith("auto") and name != "autosummary"):
        return Kind.DROP
    if name in _CODE:
        return Kind.CODE
    if name == "parsed-literal":
        return Kind.PARSED_CODE
    return Kind.TEXT


def shows_arguments(name: str) -> bool:
    """Whether a directive's argument is visible text (a tab label, an admonition title)."""
    return name.lower() not in _SILENT_ARGUMENTS


def split_options(lines: list[str]) -> tuple[dict[str, str], list[str]]:
    """Leading `:name: value` lines (dedented) of a directive body, and the rest."""
    options: dict[str, str] = {}
    i = 0
    while i < len(lines):
        match = _OPTION.match(lines[i])
        if not match:
            break
        value = match.group(2) or ""
        i += 1
        # An option value may go on over more deeply indented lines.
        while i < len(lines) and lines[i][:1].isspace() and lines[i].strip():
            value += " " + lines[i].strip()
            i += 1
        options[match.group(1).lower()] = value.strip()
    return options, lines[i:]


def is_hidden(options: dict[str, str]) -> bool:
    """`:hide:` (testoutput) or a myst-nb tag keeps a block out of the rendered page."""
    return "hide" in options or any(tag in options.get("tags", "") for tag in HIDDEN_TAGS)


def render(
    builder: DocumentBuilder,
    name: str,
    argument: str,
    options: dict[str, str],
    content: list[str],
    *,
    inline: Callable[[str], str],
    read_body: Callable[[list[str]], None],
    read_include: ReadInclude | None,
) -> None:
    """Emit what a directive shows. `inline` resolves inline markup and `read_body` reads
    a body of text, both in the markup of the page the directive is in."""
    directive_kind = kind(name)
    if directive_kind is Kind.DROP or (directive_kind is Kind.CODE and is_hidden(options)):
        return
    if caption := options.get("caption"):
        builder.line(inline(caption))
    if directive_kind is Kind.INCLUDE:
        code = literal_include(argument, options, read_include)
        if code is not None:
            builder.lines(code.split("\n"))
    elif directive_kind is Kind.CODE:
        builder.lines(content)
    elif directive_kind is Kind.PARSED_CODE:
        builder.lines(inline(line) for line in content)
    else:
        if argument and shows_arguments(name):
            builder.line(inline(argument).strip())
        read_body(content)


def literal_include(path: str, options: dict[str, str], read_include: ReadInclude | None) -> str | None:
    """The code a `literalinclude` shows, as Sphinx selects it; None if it shows nothing."""
    if read_include is None or not path:
        return None
    text = read_include(path)
    if text is None:
        return None
    lines = text.replace("\r\n", "\n").split("\n")
    lines = _cut(lines, options)
    if lines is None:
        return None
    if "lines" in options:
        lines = _pick_lines(lines, options["lines"])
    return "\n".join(lines) if lines else None


def _cut(lines: list[str], options: dict[str, str]) -> list[str] | None:
    """Apply start-after/start-at/end-before/end-at; None if a marker is missing (Sphinx
    then fails the directive and shows nothing)."""
    for option, after in (("start-after", True), ("start-at", False)):
        marker = options.get(option)
        if marker:
            found = next((i for i, line in enumerate(lines) if marker in line), None)
            if found is None:
                return None
            lines = lines[found + 1 :] if after else lines[found:]
    for option, before in (("end-before", True), ("end-at", False)):
        marker = options.get(option)
        if marker:
            found = next((i for i, line in enumerate(lines) if marker in line), None)
            if found is None:
                return None
            lines = lines[:found] if before else lines[: found + 1]
    return lines


def _pick_lines(lines: list[str], spec: str) -> list[str]:
    """Sphinx's `:lines:` syntax: 1-based, comma-separated numbers and ranges (`3-`, `-5`)."""
    picked: list[str] = []
    for part in spec.split(","):
        match = _LINE_RANGE.match(part.strip())
        if not match or not (match.group(1) or match.group(3)):
            continue
        first = int(match.group(1) or 1)
        last = first if not match.group(2) else int(match.group(3) or len(lines))
        picked.extend(lines[max(first, 1) - 1 : last])
    return picked
