"""Retrieval scores of an eval set (`{question, source}` lines) against retrieved sources."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from docent.types import page_of


@dataclass(frozen=True)
class EvalQuestion:
    question: str
    source: str

    @property
    def page(self) -> str:
        return page_of(self.source)


class EvalSetError(ValueError):
    """An eval set (or references, or responses) file that is missing or malformed."""


def read_json_rows(path: Path, what: str = "eval set") -> list[tuple[str, Any]]:
    """The rows of a JSON array or JSON-lines file, each with where it is (`line 3`, or `row 3` of an array)."""
    if not path.is_file():
        raise EvalSetError(f"{what} not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise EvalSetError(f"{path}: not UTF-8 text ({exc.reason})") from None
    if text.lstrip().startswith("["):
        try:
            return [(f"row {number}", row) for number, row in enumerate(json.loads(text), start=1)]
        except json.JSONDecodeError as exc:
            raise EvalSetError(f"{path}: not a valid JSON array ({exc})") from None
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append((f"line {number}", json.loads(line)))
        except json.JSONDecodeError as exc:
            raise EvalSetError(f"{path}, line {number}: not valid JSON ({exc.msg})") from None
    return rows


def load_eval_set(path: Path) -> list[EvalQuestion]:
    """A JSON-lines file (or a JSON array) of objects with `question` and `source`."""
    questions = []
    for where, row in read_json_rows(path):
        try:
            questions.append(EvalQuestion(str(row["question"]).strip(), str(row["source"]).strip()))
        except (KeyError, TypeError):
            raise EvalSetError(f"{path}, {where}: every row needs `question` and `source`") from None
    return questions


def retrieval_hit(gold_source: str, retrieved_sources: Sequence[str]) -> bool:
    """The reference's retrieval_score for one question: the gold page is a retrieved chunk's page."""
    gold = page_of(gold_source)
    return any(page_of(s) == gold for s in retrieved_sources)


def retrieval_score(golds: Iterable[str], retrieved: Iterable[Sequence[str]]) -> float:
    hits = [retrieval_hit(g, r) for g, r in zip(golds, retrieved, strict=True)]
    return sum(hits) / len(hits) if hits else 0.0
