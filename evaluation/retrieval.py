"""Retrieval scores of an eval set (`{question, source}` lines) against retrieved sources."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from docent.types import page_of


@dataclass(frozen=True)
class EvalQuestion:
    question: str
    source: str

    @property
    def page(self) -> str:
        return page_of(self.source)


class EvalSetError(ValueError):
    pass


def load_eval_set(path: Path) -> list[EvalQuestion]:
    """A JSON-lines file (or a JSON array) of objects with `question` and `source`."""
    if not path.is_file():
        raise EvalSetError(f"eval set not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        rows = json.loads(text) if text.lstrip().startswith("[") else [json.loads(l) for l in text.splitlines() if l.strip()]
    except json.JSONDecodeError as exc:
        raise EvalSetError(f"{path}: not JSON lines or a JSON array ({exc})") from exc
    try:
        return [EvalQuestion(str(r["question"]).strip(), str(r["source"]).strip()) for r in rows]
    except (KeyError, TypeError) as exc:
        raise EvalSetError(f"{path}: every row needs `question` and `source`") from exc


def retrieval_hit(gold_source: str, retrieved_sources: Sequence[str]) -> bool:
    """The reference's retrieval_score for one question: the gold page is a retrieved chunk's page."""
    gold = page_of(gold_source)
    return any(page_of(s) == gold for s in retrieved_sources)


def retrieval_score(golds: Iterable[str], retrieved: Iterable[Sequence[str]]) -> float:
    hits = [retrieval_hit(g, r) for g, r in zip(golds, retrieved, strict=True)]
    return sum(hits) / len(hits) if hits else 0.0
