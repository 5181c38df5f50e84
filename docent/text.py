"""Small text helpers several layers need, each defined once.

- `normalise_question`: when two questions are "the same" (the answer cache, the flywheel's
  merging, golden-set de-duplication all use this one rule);
- `page_section_title`: the "Page > Section" heading of a chunk or source;
- `first_json`: the first JSON value in an LLM's reply (fenced or not) that a caller accepts;
- `collect_text`: an LLM's streamed reply as one string.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterable, Callable
from typing import Any

_WORD = re.compile(r"\w+")
_JSON_START = re.compile(r"[\[{]")


def normalise_question(question: str) -> str:
    """Lower-cased words, one space apart: case, punctuation and spacing don't change what is asked."""
    return " ".join(_WORD.findall(question.casefold()))


def page_section_title(page_title: str, section_title: str) -> str:
    """`Page > Section`; one title when the other is missing or the same."""
    return " > ".join(dict.fromkeys(t for t in (page_title, section_title) if t))


def first_json(reply: str, accept: Callable[[Any], bool] = lambda value: isinstance(value, dict)) -> Any | None:
    """The first JSON object or array in `reply` for which `accept` is true (default: any object); else None.

    LLMs wrap JSON in prose or Markdown fences; every `{` or `[` is tried as a start."""
    decoder = json.JSONDecoder()
    for match in _JSON_START.finditer(reply):
        try:
            value, _ = decoder.raw_decode(reply, match.start())
        except json.JSONDecodeError:
            continue
        if accept(value):
            return value
    return None


async def collect_text(pieces: AsyncIterable[Any]) -> str:
    """The text of a streamed LLM reply (non-text items, such as the final usage, are left out)."""
    return "".join([piece async for piece in pieces if isinstance(piece, str)])
