"""A chunk's text as the blocks a reader sees: prose sentences, lists, code, and what to skip.

The loaders keep a page's structure in plain text: paragraphs separated by blank lines,
list items starting with a marker, code with its indentation, but no fences. An answer
quoted from a chunk must keep that structure (a code block as fenced code, a list as a
list), so the chunk is read back into blocks here, and each block into the units an
answer is made of: a prose sentence, a whole list, a whole code block.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9`\"'(\[])")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+•]|\d{1,3}[.)])\s+\S")
# What makes a line code rather than prose: statements, calls, assignments, shell prompts…
_CODE_LINE = re.compile(
    r"""^\s*(?:import\s|from\s+[\w.]+\s+import\s|def\s|class\s|async\s|await\s|return\b|raise\s|with\s|for\s.*:$
        |if\s.*:$|elif\s|else:|try:|except\b|finally:|while\s|yield\b|print\(|@\w|\#|//|/\*|\*/|\$\s|>>>|\.\.\.\s|[})\]],?$
        |pip\s|kubectl\s|ray\s+(?:start|stop|submit|status|job|up|down|exec|attach|list|get|summary|timeline)\b
        |serve\s+(?:run|deploy|build|status|shutdown|config)\b|export\s\w+=|docker\s|helm\s|curl\s|python\s|--?\w)
    |^\s*[\w]+(?:\.\w+)+(?:\(.*\))?\s*$|[\w\]\)]\s*=\s*\S|\w\(.*\)\s*$|\w\($|[{};]\s*$|^\s*[\w."'-]+:\s*(?:[a-z0-9"'{\[\-./]|$)(?!.*\.\s*$)""",
    re.VERBOSE,
)
_PROSE_LINE = re.compile(r"[A-Za-z][a-z]+(?:\s+[A-Za-z'(),-]+){5,}[.!?:]\s*$")
_TABLE_ROW = re.compile(r"^\s*\|.*\|\s*$|^\s*[=+-]{3,}[\s=+-]*$|\S(?: {3,}\S+){3,}")
# One- or two-word lines without punctuation: tab labels ("Python", "Java") and headings.
_MAX_LABEL_WORDS = 2
_MIN_SENTENCE_CHARS = 25
_PLAIN_WORD = re.compile(r"\(?[A-Za-z][a-z'-]*[,.;:!?)]?")
_MIN_WORDY_WORDS = 8
_WORDY_SHARE = 0.6
_COMMENT_MARKS = ("# ", "#!", "// ", "/*", "* ", "*/")
_ABBREVIATIONS = re.compile(r"(?:\b(?:e\.g|i\.e|etc|vs|cf|approx|incl|esp)\.|\b[A-Z]\.)$", re.IGNORECASE)
_INDENT = re.compile(r"^( {2,}|\t)")


class BlockKind(StrEnum):
    PROSE = "prose"
    LIST = "list"
    CODE = "code"
    SKIP = "skip"  # headings, tab labels, table rows: not quoted


@dataclass(frozen=True)
class Unit:
    """The smallest piece an answer quotes: a sentence, a whole list or a whole code block."""

    kind: BlockKind
    text: str
    paragraph: int  # units of one paragraph are contiguous text

    @property
    def quotable(self) -> bool:
        """Prose worth quoting on its own: a whole sentence, not a fragment cut by the chunker."""
        if self.kind == BlockKind.LIST:
            return True
        if self.kind != BlockKind.PROSE or len(self.text) < _MIN_SENTENCE_CHARS:
            return False
        return not self.text[0].islower()

    def markdown(self) -> str:
        if self.kind == BlockKind.CODE:
            return f"```\n{self.text}\n```"
        return self.text


def paragraphs(text: str) -> list[list[str]]:
    """Runs of non-blank lines."""
    runs: list[list[str]] = [[]]
    for line in text.split("\n"):
        if line.strip():
            runs[-1].append(line.rstrip())
        elif runs[-1]:
            runs.append([])
    return [run for run in runs if run]


def classify(lines: Sequence[str]) -> BlockKind | None:
    """SKIP for a paragraph that is a table or a label; None when its lines must be read one by one."""
    if all(_TABLE_ROW.search(line) for line in lines):
        return BlockKind.SKIP
    if len(lines) == 1 and _is_label(lines[0]):
        return BlockKind.SKIP
    return None


def is_code_line(line: str) -> bool:
    if line.lstrip().startswith(_COMMENT_MARKS):
        return True  # a comment reads like a sentence but belongs to its code
    if _PROSE_LINE.search(line) and not line.rstrip().endswith(":") or _LIST_ITEM.match(line) or _is_wordy(line):
        return False
    return bool(_CODE_LINE.search(line)) or (bool(_INDENT.match(line)) and not _PROSE_LINE.search(line))


def _is_wordy(line: str) -> bool:
    """Mostly plain words: a sentence (wrapped, maybe naming a parameter), not a statement or a comment."""
    words = line.split()
    if len(words) < _MIN_WORDY_WORDS or line.lstrip().startswith(("#", "//")):
        return False
    return sum(1 for word in words if _PLAIN_WORD.fullmatch(word)) >= _WORDY_SHARE * len(words)


def _is_label(line: str) -> bool:
    words = line.split()
    return len(words) <= _MAX_LABEL_WORDS and not re.search(r"[.!?=()\[\]{}]", line) and not _CODE_LINE.search(line)


def blocks(text: str) -> list[tuple[BlockKind, list[str]]]:
    """Paragraphs, each split where it turns from prose to a list or code and back (a page's
    code often follows its introducing sentence without a blank line)."""
    found: list[tuple[BlockKind, list[str]]] = []
    for lines in paragraphs(text):
        kind = classify(lines)
        if kind is not None:
            found.append((kind, lines))
            continue
        runs: list[tuple[BlockKind, list[str]]] = []
        for line in lines:
            line_kind = _line_kind(line, runs[-1][0] if runs else None)
            if runs and runs[-1][0] == line_kind:
                runs[-1][1].append(line)
            else:
                runs.append((line_kind, [line]))
        found.extend(_smooth(runs))
    return found


def _line_kind(line: str, previous: BlockKind | None) -> BlockKind:
    if previous == BlockKind.CODE and _INDENT.match(line):
        return BlockKind.CODE  # an indented line goes on with its code (a YAML list, a method body)
    if _LIST_ITEM.match(line):
        return BlockKind.LIST
    if is_code_line(line):
        return BlockKind.CODE
    return BlockKind.LIST if previous == BlockKind.LIST else BlockKind.PROSE  # an item's continuation


def _smooth(runs: list[tuple[BlockKind, list[str]]]) -> list[tuple[BlockKind, list[str]]]:
    """A one-line run between two runs of one kind joins them (a wrapped sentence, a bare name in code)."""
    smoothed: list[tuple[BlockKind, list[str]]] = []
    for position, (run_kind, lines) in enumerate(runs):
        around = {runs[position - 1][0], runs[position + 1][0]} if 0 < position < len(runs) - 1 else set()
        announced = position > 0 and runs[position - 1][1][-1].rstrip().endswith(":")
        if len(lines) == 1 and len(around) == 1 and run_kind not in around and BlockKind.LIST not in around | {run_kind} and not announced:
            run_kind = around.pop()
        if smoothed and smoothed[-1][0] == run_kind:
            smoothed[-1][1].extend(lines)
        else:
            smoothed.append((run_kind, list(lines)))
    return smoothed


def units(text: str) -> list[Unit]:
    """The chunk's units in order: adjacent code paragraphs become one block, prose splits into sentences."""
    found: list[Unit] = []
    for number, (kind, lines) in enumerate(blocks(text)):
        if kind == BlockKind.CODE and found and found[-1].kind == BlockKind.CODE:
            previous = found.pop()  # a blank line inside a code block: still one block
            found.append(Unit(BlockKind.CODE, previous.text + "\n\n" + "\n".join(lines), previous.paragraph))
        elif kind == BlockKind.CODE or kind == BlockKind.LIST:
            found.append(Unit(kind, "\n".join(lines), number))
        elif kind == BlockKind.PROSE:
            prose = " ".join(" ".join(lines).split())
            found.extend(Unit(kind, sentence, number) for sentence in split_sentences(prose))
        elif found and found[-1].kind != BlockKind.SKIP:
            found.append(Unit(kind, "\n".join(lines), number))  # a break: a heading or label between units
    return [Unit(u.kind, _dedent(u.text.split("\n")), u.paragraph) if u.kind == BlockKind.CODE else u for u in found]


def split_sentences(text: str) -> list[str]:
    """Sentences of a prose text; "e.g." and the like end none."""
    sentences: list[str] = []
    for piece in SENTENCE_END.split(text):
        if sentences and _ABBREVIATIONS.search(sentences[-1]):
            sentences[-1] += " " + piece
        elif piece:
            sentences.append(piece)
    return sentences


def _dedent(lines: Sequence[str]) -> str:
    indents = [len(line) - len(line.lstrip()) for line in lines if line.strip()]
    cut = min(indents, default=0)
    return "\n".join(line[cut:] for line in lines)


def render(parts: Sequence[Unit]) -> str:
    """Units as Markdown: sentences of one paragraph run on; lists and code stand apart."""
    out: list[str] = []
    for previous, unit in zip([None, *parts], parts):
        joins_previous = (
            previous is not None and unit.kind == previous.kind == BlockKind.PROSE and unit.paragraph == previous.paragraph
        )
        if joins_previous:
            out[-1] += " " + unit.text
        else:
            out.append(unit.markdown())
    return "\n\n".join(out)
