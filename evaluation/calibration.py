"""Calibrate an index's abstention: fit its scope model on questions it should and should not answer.

Both sets are retrieved through the same query embedder and retriever as served answers,
so the features the model is fitted on are the ones it will see. In-scope questions whose
gold page is not in the index are left out (the index cannot answer them). The fitted model
is stored with the index; served retrievers pick it up at their next refresh.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from docent.datasets import EvalSetError, read_json_rows
from docent.db import connect
from docent.scope import ScopeFeatures, ScopeModel, fit_scope
from docent.settings import Settings
from docent.store import IndexStore
from docent.types import QueryOptions, page_of

# The out-of-scope questions that ship with docent: other products, general questions, and
# near-domain questions the Ray 2.7 docs do not answer (each checked against that corpus).
OUT_OF_SCOPE_SET = Path(str(files("evaluation") / "datasets" / "out-of-scope.jsonl"))

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class ScopeQuestion:
    question: str
    source: str | None = None  # the gold page, for in-scope questions that name one
    category: str = ""


@dataclass
class CalibrationReport:
    index: str
    model: ScopeModel
    in_scope: int
    out_of_scope: int
    skipped_not_indexed: int  # in-scope questions whose gold page is not in the index
    out_of_scope_abstained_by_category: dict[str, float] = field(default_factory=dict)


def read_scope_questions(path: Path, what: str) -> list[ScopeQuestion]:
    """{question, source?, category?} rows (JSON lines or an array); a row without a question is an error."""
    questions = []
    for where, row in read_json_rows(path, what):
        question = row.get("question") if isinstance(row, dict) else None
        if not isinstance(question, str) or not question.strip():
            raise EvalSetError(f"{path}: {where} has no question")
        source = row.get("source")
        questions.append(ScopeQuestion(question.strip(), source if isinstance(source, str) else None, str(row.get("category", ""))))
    if not questions:
        raise EvalSetError(f"{path}: no questions")
    return questions


def sample(questions: Sequence[ScopeQuestion], limit: int | None, seed: int) -> list[ScopeQuestion]:
    """At most `limit` questions, the same ones for the same seed."""
    if limit is None or len(questions) <= limit:
        return list(questions)
    return random.Random(seed).sample(list(questions), limit)


def split_half(question: str) -> int:
    """0 or 1, fixed per question: the benchmark fits on one half and reports on the other."""
    return int(hashlib.sha256(question.encode()).hexdigest(), 16) % 2


async def retrieve_features(
    settings: Settings, questions: Sequence[str], progress: ProgressCallback | None = None
) -> list[ScopeFeatures]:
    """Each question's scope features, retrieved as the served pipeline retrieves it."""
    from services.gateway.local import close_local_pipeline, open_local_pipeline

    pipeline = await open_local_pipeline(settings)
    try:
        service = pipeline.retriever
        retriever = await service.retriever(settings.index_name)
        features = []
        for done, question in enumerate(questions, start=1):
            result = await service.search(question, settings.index_name, QueryOptions(abstain=False))
            features.append(retriever.scope_features(question, result.hits))
            if progress:
                progress(done, len(questions))
        return features
    finally:
        await close_local_pipeline(pipeline)


async def indexed_pages(settings: Settings) -> set[str]:
    conn = await connect(settings)
    try:
        store = IndexStore(conn)
        return await store.pages(await store.require(settings.index_name))
    finally:
        await conn.close()


async def save_scope(settings: Settings, model: ScopeModel) -> None:
    conn = await connect(settings)
    try:
        store = IndexStore(conn)
        await store.save_scope(await store.require(settings.index_name), model.model_dump())
    finally:
        await conn.close()


async def calibrate(
    settings: Settings,
    in_scope: Sequence[ScopeQuestion],
    out_of_scope: Sequence[ScopeQuestion],
    progress: ProgressCallback | None = None,
    save: bool = True,
) -> CalibrationReport:
    pages = await indexed_pages(settings)
    answerable = [q for q in in_scope if q.source is None or page_of(q.source) in pages]
    if not answerable:
        raise EvalSetError("none of the in-scope questions' gold pages is in the index: is it the right index?")
    questions = [q.question for q in answerable] + [q.question for q in out_of_scope]

    def report(done: int, total: int) -> None:
        if progress:
            progress(done, total)

    features = await retrieve_features(settings, questions, report)
    inside, outside = features[: len(answerable)], features[len(answerable) :]
    a = settings.abstention
    model = fit_scope(inside, outside, a.max_in_scope_abstained, a.regularisation)
    if save:
        await save_scope(settings, model)
    return CalibrationReport(
        index=settings.index_name,
        model=model,
        in_scope=len(answerable),
        out_of_scope=len(out_of_scope),
        skipped_not_indexed=len(in_scope) - len(answerable),
        out_of_scope_abstained_by_category=abstained_by_category(model, out_of_scope, outside),
    )


def abstained_by_category(model: ScopeModel, questions: Sequence[ScopeQuestion], features: Sequence[ScopeFeatures]) -> dict[str, float]:
    totals, abstained = Counter(), Counter()
    for question, feature in zip(questions, features):
        category = question.category or "uncategorised"
        totals[category] += 1
        abstained[category] += not model.in_scope(feature)
    return {category: round(abstained[category] / totals[category], 4) for category in sorted(totals)}
