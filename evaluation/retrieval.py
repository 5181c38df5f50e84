"""Retrieval scores of an eval set (`{question, source}` lines) against retrieved sources."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from docent.datasets import EvalSetError, read_json_rows
from docent.types import page_of


@dataclass(frozen=True)
class EvalQuestion:
    question: str
    source: str

    @property
    def page(self) -> str:
        return page_of(self.source)


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
