"""Evaluate one configuration: answer an eval set in-process, keep every answer, score them offline.

The run writes into one folder:

- `responses.jsonl`: one line per answered question, appended (and flushed) as each
  answer arrives, so a killed run loses at most the line being written. A new run in the
  same folder skips the questions already there and asks the rest; questions that failed
  are asked again.
- `config.json`: the configuration the answers came from; a run with another one refuses
  the folder rather than mixing answers of two configurations.
- `judgements.jsonl` (with a judge): the LLM judge's verdict on each answer, appended as it
  arrives and keyed by judge, question, reference and answer, so a new run judges only what
  is new; unscored verdicts are judged again.
- `ragas.jsonl` (with a Ragas scorer): faithfulness, answer relevancy, context precision and
  recall of each answer (evaluation/ragas.py), appended as they arrive and keyed by scorer,
  question, answer, contexts and reference; a new run scores only what is new, and asks
  again for the metrics left unscored.
- `evaluation.json`: the configuration, the eval set, every row with its scores, and the
  means over all questions and over the in-corpus ones (gold page in the index); retrieval
  means are over the questions with a gold source only (`with_gold`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from docent.datasets import EvalSetError, read_json_rows
from docent.db import connect
from docent.llm import require_llm
from docent.settings import EmbeddingSettings, Settings
from docent.store import IndexRecord, IndexStore
from docent.types import EXTRACTIVE_LLM, QueryOptions, QueryRequest, page_of
from evaluation.judge import Judge, JudgeVerdict
from evaluation.metrics import RAGAS_METRICS, aggregate, cosine_similarity, has_gold, retrieval_metrics, token_f1
from evaluation.ragas import MetricScore, RagasScorer, RagasScores
from evaluation.retrieval import EvalQuestion, load_eval_set

RESPONSES_FILE = "responses.jsonl"
CONFIG_FILE = "config.json"
EVALUATION_FILE = "evaluation.json"
JUDGEMENTS_FILE = "judgements.jsonl"
RAGAS_FILE = "ragas.jsonl"
_LLM_ESSENTIALS = {"name", "model", "base_url", "context_length", "max_tokens"}  # not keys, prices or timeouts

ProgressCallback = Callable[[int, int], None]  # (questions answered, questions in the run)


@dataclass(frozen=True)
class EvalSet:
    path: Path
    sha256: str
    questions: list[EvalQuestion]


@dataclass(frozen=True)
class EvalReport:
    responses: Path
    evaluation: Path
    aggregates: dict[str, Any]
    asked: int  # questions this run asked; the others' answers were already in responses.jsonl


def open_eval_set(path: Path) -> EvalSet:
    """An eval set file with its checksum; each question may appear once (answers are keyed by it)."""
    questions = load_eval_set(path)
    if not questions:
        raise EvalSetError(f"{path}: the eval set has no questions")
    seen: set[str] = set()
    for q in questions:
        if q.question in seen:
            raise EvalSetError(f"{path} asks {q.question!r} twice: each question may appear once")
        seen.add(q.question)
    return EvalSet(path, hashlib.sha256(path.read_bytes()).hexdigest(), questions)


def load_references(path: Path) -> dict[str, str]:
    """question → reference answer, from a JSON array or JSON lines of `{question, answer, …}`.

    Rows with an empty answer (the reference found nothing to say) are left out.
    """
    references: dict[str, str] = {}
    for where, row in read_json_rows(path, "references file"):
        if not isinstance(row, dict) or not isinstance(row.get("question"), str) or "answer" not in row:
            raise EvalSetError(f"{path}, {where}: every row needs `question` and `answer`")
        if row["answer"]:
            references[row["question"].strip()] = str(row["answer"])
    return references


async def run_eval(
    settings: Settings,
    eval_set: EvalSet,
    references: dict[str, str],
    out_dir: Path,
    concurrency: int,
    limit: int | None = None,
    progress: ProgressCallback | None = None,
    llm: str | None = None,
    judge: Judge | None = None,
    ragas: RagasScorer | None = None,
) -> EvalReport:
    """Answer the first `limit` questions (all by default) not yet in `out_dir`, then score every answer.

    `llm` asks every question of that LLM (or `extractive`); by default the router chooses.
    `judge` also scores each answer that has a reference answer 1–5 (`scores["quality"]`),
    `concurrency` answers at a time, judging only those not judged by an earlier run.
    `ragas` adds the Ragas-style metrics of each answer (context ones where a reference exists), likewise resumable.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, not {concurrency}")
    known_llms = [m.name for m in settings.generation.llms]
    if llm is not None:
        require_llm(llm, [*known_llms, EXTRACTIVE_LLM])
    index, pages = await _index_and_pages(settings)
    config = describe_config(settings, index, llm)
    out_dir.mkdir(parents=True, exist_ok=True)
    _claim_folder(out_dir / CONFIG_FILE, config)

    questions = eval_set.questions[:limit]
    responses = out_dir / RESPONSES_FILE
    answered = {row["question"]: row for row in resume_responses(responses)}
    pending = [q for q in questions if q.question not in answered]
    done, total = len(questions) - len(pending), len(questions)
    if progress:
        progress(done, total)
    if pending:
        arriving = _answers(settings, pending, QueryOptions(llm=llm), concurrency)
        with responses.open("a", encoding="utf-8") as file:
            async with aclosing(arriving):
                async for row in arriving:
                    file.write(json.dumps(row) + "\n")
                    file.flush()
                    answered[row["question"]] = row
                    done += 1
                    if progress:
                        progress(done, total)

    embedding = settings.embedding.model_copy(update={"model": index.config.embedding_model})
    ordered = [answered[q.question] for q in questions]
    verdicts = {}
    if judge is not None:
        verdicts = await _verdicts(judge, ordered, references, out_dir / JUDGEMENTS_FILE, concurrency)
    ragas_scores = {}
    if ragas is not None:
        ragas_scores = await _ragas_scores(ragas, ordered, references, out_dir / RAGAS_FILE, concurrency)
    rows = await _scored_rows(ordered, references, pages, embedding, verdicts, ragas_scores)
    aggregates = aggregate(rows, pages)
    evaluation = {
        "config": config,
        "eval_set": {"path": str(eval_set.path), "sha256": eval_set.sha256, "questions": len(questions)},
        "rows": rows,
        "aggregates": aggregates,
    }
    evaluation_path = out_dir / EVALUATION_FILE
    write_atomically(evaluation_path, json.dumps(evaluation, indent=2) + "\n")
    return EvalReport(responses, evaluation_path, aggregates, asked=len(pending))


async def _index_and_pages(settings: Settings) -> tuple[IndexRecord, set[str]]:
    conn = await connect(settings)
    try:
        store = IndexStore(conn)
        index = await store.require(settings.index_name)
        return index, await store.pages(index)
    finally:
        await conn.close()


async def _answers(
    settings: Settings, questions: Sequence[EvalQuestion], options: QueryOptions, concurrency: int
) -> AsyncIterator[dict[str, Any]]:
    """Each question's response row as soon as it is answered, `concurrency` questions at a time."""
    from services.gateway.local import close_local_pipeline, open_local_pipeline

    pipeline = await open_local_pipeline(settings)
    slots = asyncio.Semaphore(concurrency)

    async def ask(question: EvalQuestion) -> dict[str, Any]:
        async with slots:
            return await _answer(pipeline, question, options)

    tasks = [asyncio.ensure_future(ask(q)) for q in questions]
    try:
        for finished in asyncio.as_completed(tasks):
            yield await finished
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await close_local_pipeline(pipeline)


async def _answer(pipeline: Any, question: EvalQuestion, options: QueryOptions) -> dict[str, Any]:
    row: dict[str, Any] = {"question": question.question, "source": question.source}
    try:
        answer = await pipeline.answer(QueryRequest(query=question.question, options=options))
    except Exception as exc:  # noqa: BLE001 - one failed question is recorded, not the end of the run
        return row | {"answer": None, "sources": [], "contexts": [], "llm": None, "route": None, "usage": None, "cost": 0.0,
                      "timings_ms": {}, "error": f"{type(exc).__name__}: {exc}".rstrip(": ")}
    return row | {
        "answer": answer.answer,
        "sources": [s.source for s in answer.sources],
        "contexts": [s.text for s in answer.sources],  # what the answer was given: context metrics and costs read it
        "llm": answer.llm,
        "route": answer.route.model_dump(),
        "usage": answer.usage.model_dump(),
        "cost": answer.cost,
        "timings_ms": answer.timings_ms,
    }


def _judgement_key(judge: str, question: str, reference: str, answer: str) -> str:
    return hashlib.sha256(json.dumps([judge, question, reference, answer]).encode()).hexdigest()


async def _verdicts(
    judge: Judge, rows: Sequence[dict[str, Any]], references: dict[str, str], path: Path, concurrency: int
) -> dict[str, JudgeVerdict]:
    """question → the judge's verdict, for each answered row with a reference; new verdicts are appended to `path`."""
    keys = {
        r["question"]: _judgement_key(judge.name, r["question"], references[r["question"]], r["answer"])
        for r in rows
        if r["question"] in references and r.get("answer") and not r.get("error")
    }
    judged = resume_judgements(path)
    verdicts = {question: judged[key] for question, key in keys.items() if key in judged}
    pending = [r for r in rows if r["question"] in keys and r["question"] not in verdicts]
    if not pending:
        return verdicts
    slots = asyncio.Semaphore(concurrency)

    async def judge_one(row: dict[str, Any]) -> tuple[str, JudgeVerdict]:
        async with slots:
            return row["question"], await judge.score(row["question"], references[row["question"]], row["answer"])

    tasks = [asyncio.ensure_future(judge_one(r)) for r in pending]
    try:
        with _append_lines(path) as file:
            for finished in asyncio.as_completed(tasks):
                question, verdict = await finished
                line = {"key": keys[question], "judge": judge.name, "question": question} | verdict.to_json()
                file.write(json.dumps(line) + "\n")
                file.flush()
                verdicts[question] = verdict
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return verdicts


def resume_judgements(path: Path) -> dict[str, JudgeVerdict]:
    """key → scored verdict already in `path`.

    Unreadable lines (a killed write) and unscored verdicts are skipped: their answers are judged again.
    """
    if not path.exists():
        return {}
    judged: dict[str, JudgeVerdict] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
            verdict = JudgeVerdict(row["score"], row["reasoning"], row["attempts"], row.get("error"))
            key = row["key"]
        except (json.JSONDecodeError, TypeError, KeyError):
            continue
        if isinstance(verdict.score, int) and isinstance(key, str):
            judged[key] = verdict
    return judged


def _ragas_key(scorer: RagasScorer, row: dict[str, Any], reference: str | None) -> str:
    payload = [*scorer.signature, row["question"], row["answer"], row.get("contexts"), reference]
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()


def _ragas_wanted(row: dict[str, Any], reference: str | None) -> tuple[str, ...]:
    """The metrics a row can have: context ones need its contexts (rows of older runs lack them) and a reference."""
    if "contexts" not in row:
        return ("answer_relevancy",)
    return RAGAS_METRICS if reference else ("faithfulness", "answer_relevancy")


async def _ragas_scores(
    scorer: RagasScorer, rows: Sequence[dict[str, Any]], references: dict[str, str], path: Path, concurrency: int
) -> dict[str, RagasScores]:
    """question → its Ragas-style scores, for each answered row.

    Only the metrics `path` does not hold scored already are asked for; what they get is appended to it.
    """
    answered = [r for r in rows if r.get("answer") and not r.get("error")]
    keys = {r["question"]: _ragas_key(scorer, r, references.get(r["question"])) for r in answered}
    stored = resume_ragas(path)
    results = {question: RagasScores(stored.get(key, {})) for question, key in keys.items()}
    missing = {
        r["question"]: [m for m in _ragas_wanted(r, references.get(r["question"])) if m not in results[r["question"]].metrics]
        for r in answered
    }
    pending = [r for r in answered if missing[r["question"]]]
    slots = asyncio.Semaphore(concurrency)

    async def score_one(row: dict[str, Any]) -> tuple[str, RagasScores]:
        question = row["question"]
        async with slots:
            contexts, reference = row.get("contexts") or [], references.get(question)
            return question, await scorer.score(question, row["answer"], contexts, reference, missing[question])

    tasks = [asyncio.ensure_future(score_one(r)) for r in pending]
    try:
        with _append_lines(path) as file:
            for finished in asyncio.as_completed(tasks):
                question, new = await finished
                line = {"key": keys[question], "scorer": scorer.name, "question": question, "metrics": new.to_json()}
                file.write(json.dumps(line) + "\n")
                file.flush()
                results[question] = RagasScores(results[question].metrics | new.metrics)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return results


def _append_lines(path: Path) -> Any:
    """`path` opened to append lines; a line a killed run left without its newline is ended first, not continued."""
    if path.exists() and path.stat().st_size and not path.read_bytes().endswith(b"\n"):
        with path.open("a", encoding="utf-8") as file:
            file.write("\n")
    return path.open("a", encoding="utf-8")


def resume_ragas(path: Path) -> dict[str, dict[str, MetricScore]]:
    """key → the metrics scored so far in `path` (later lines add to earlier ones).

    Unreadable lines (a killed write) and unscored metrics are skipped: they are asked for again.
    """
    if not path.exists():
        return {}
    scored: dict[str, dict[str, MetricScore]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
            key, scores = row["key"], RagasScores.from_json(row["metrics"])
        except (json.JSONDecodeError, TypeError, KeyError, AttributeError):
            continue
        if isinstance(key, str):
            scored.setdefault(key, {}).update(scores.scored)
    return scored


def resume_responses(path: Path) -> list[dict[str, Any]]:
    """The answered rows already in `path`; the file is rewritten without what a new run replaces.

    A kill mid-write leaves an incomplete last line: it is dropped. Rows that failed are
    dropped too, so that their questions are asked again. Any other bad line is an error.
    """
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").split("\n")
    kept: list[str] = []
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):  # no newline after it: the line being written when the run stopped
                continue
            raise EvalSetError(f"{path}, line {number}: not valid JSON; fix or remove the line") from None
        if not isinstance(row, dict) or not isinstance(row.get("question"), str):
            raise EvalSetError(f"{path}, line {number}: not a response row (no `question`)")
        if row.get("error") or row["question"] in seen:
            continue
        seen.add(row["question"])
        kept.append(line)
        rows.append(row)
    clean = "".join(line + "\n" for line in kept)
    if clean != "\n".join(lines):
        write_atomically(path, clean)
    return rows


async def _scored_rows(
    rows: Sequence[dict[str, Any]],
    references: dict[str, str],
    pages: set[str],
    embedding: EmbeddingSettings,
    verdicts: dict[str, JudgeVerdict] | None = None,
    ragas: dict[str, RagasScores] | None = None,
) -> list[dict[str, Any]]:
    """Every row with `in_corpus` and `scores`; retrieval metrics only where a gold source is named, answer
    metrics only where a reference answer exists.

    A row with a verdict also gets `scores["quality"]` (None: unscored) and `judge`; a row with
    Ragas-style scores gets each metric's score in `scores` (None: unscored) and its attempts,
    error and counts in `ragas`.
    """
    verdicts, ragas = verdicts or {}, ragas or {}
    with_reference = [r for r in rows if r["question"] in references and not r.get("error")]
    similarities = await asyncio.to_thread(_similarities, with_reference, references, embedding)
    scored = []
    for row in rows:
        # Without a gold page there is nothing to find: no score, rather than a miss that lowers the means.
        scores: dict[str, Any] = retrieval_metrics(row["source"], row["sources"]) if has_gold(row["source"]) else {}
        if row["question"] in references:
            # A failed question has no answer: it scores zero rather than being left out.
            failed = bool(row.get("error"))
            scores["token_f1"] = 0.0 if failed else token_f1(row["answer"], references[row["question"]])
            scores["answer_similarity"] = 0.0 if failed else similarities[row["question"]]
        extra: dict[str, Any] = {"in_corpus": page_of(row["source"]) in pages, "scores": scores}
        if (verdict := verdicts.get(row["question"])) is not None:
            scores["quality"] = verdict.score
            extra["judge"] = {"reasoning": verdict.reasoning, "attempts": verdict.attempts, "error": verdict.error}
        if (graded := ragas.get(row["question"])) is not None:
            scores.update(graded.values)
            extra["ragas"] = {name: {k: v for k, v in m.items() if k != "score"} for name, m in graded.to_json().items()}
        scored.append(row | extra)
    return scored


def _similarities(
    rows: Sequence[dict[str, Any]], references: dict[str, str], embedding: EmbeddingSettings
) -> dict[str, float]:
    """Cosine of each answer's and its reference's embeddings (no query prefix: both are passages)."""
    if not rows:
        return {}
    from docent.embedding.model import load_embedder

    model = load_embedder(embedding)
    vectors = model.embed([r["answer"] for r in rows] + [references[r["question"]] for r in rows])
    return {r["question"]: cosine_similarity(vectors[i], vectors[len(rows) + i]) for i, r in enumerate(rows)}


def describe_config(settings: Settings, index: IndexRecord, llm: str | None) -> dict[str, Any]:
    """What decides the answers: the index as built, and the query-time settings."""
    built, generation = index.config, settings.generation
    reranker, router = settings.model_artifact("reranker"), settings.model_artifact("router")
    return {
        "index": built.name,
        "embedding_model": built.embedding_model,
        "query_backend": settings.embedding.query_backend,
        "chunking": {"chunk_size": built.chunk_size, "chunk_overlap": built.chunk_overlap,
                     "unit": built.chunk_unit, "include_titles": built.include_titles},
        "retrieval": settings.retrieval.model_dump(mode="json"),
        "lexical": settings.lexical.model_dump(mode="json"),
        "rerank": settings.rerank.model_dump(mode="json", exclude={"artifact"})
        | {"classifier": str(reranker) if reranker.is_file() else None},
        "generation": {
            "llm": llm,
            "llms": [m.model_dump(include=_LLM_ESSENTIALS) for m in generation.llms],
            **generation.model_dump(mode="json", exclude={"llms", "system_prompt"}),
            "router": str(router) if router.is_file() else None,
        },
        "system_prompt": generation.system_prompt,
    }


def _claim_folder(path: Path, config: dict[str, Any]) -> None:
    """Record the run's configuration, or refuse a folder holding answers of another one."""
    config = json.loads(json.dumps(config))  # as it reads back from the file
    if path.exists():
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            raise EvalSetError(f"{path}: not valid JSON; remove the folder or use another --out") from None
        if previous != config:
            raise EvalSetError(
                f"{path.parent} holds answers of another configuration ({'; '.join(_differences(previous, config))}): "
                "use another --out or remove the folder"
            )
        return
    write_atomically(path, json.dumps(config, indent=2) + "\n")


def _differences(before: Any, after: Any, where: str = "") -> list[str]:
    """`key.path: old → new` for each value that differs between two JSON objects."""
    if isinstance(before, dict) and isinstance(after, dict):
        keys = sorted(before.keys() | after.keys())
        return [d for k in keys for d in _differences(before.get(k), after.get(k), f"{where}.{k}" if where else k)]
    return [] if before == after else [f"{where}: {json.dumps(before)} → {json.dumps(after)}"]


def write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
