"""Synthetic ("golden") question/answer pairs from an index's sections, generated as Ray tasks.

The cold start of the reference guide, fanned out as the distributed-experimentation
write-up does: sections (an index's chunks grouped by `source`, texts joined in order)
long enough to ask about are sampled at random (seedable), and each Ray task asks the LLM
for one `{"question": ..., "answer": ...}` per section of its batch. Replies without
JSON, without a question or with an empty answer are dropped and counted by reason (a
question need not end in "?": "How do I X" is still a question). Pairs whose question
is, once normalised (lower case, words only), the same as a kept one's, or shares at
least `golden_dedup_similarity` of its words with one (token Jaccard), are duplicates.

The output, JSON lines of `{question, source, answer}`, is both an eval set (`--eval`)
and its references (`--references`).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from docent.datasets import EvalSetError
from docent.db import connect
from docent.llm import LLMFailure, WordCount, open_llm
from docent.sections import StoredSection
from docent.settings import LLMSettings, Settings
from docent.store import IndexStore
from docent.text import collect_text, first_json, normalise_question
from evaluation.references import ContextBudget

GOLDEN_TEMPERATURE = 0.0
TASK_CPUS = 0.5  # a task mostly waits on the LLM

GOLDEN_PROMPT = """\
You write evaluation data for a documentation assistant.
Given one section of the documentation, write one question a user could ask that this section answers, and its \
answer, using only the section. The question must make sense without the section: name the feature, setting or \
command it is about. The answer must be succinct and correct according to the section.
Reply with one JSON object and nothing else:
{"question": "<the question>", "answer": "<the answer>"}"""

NO_JSON, NO_QUESTION, EMPTY_ANSWER, LLM_FAILED, TASK_FAILED = (
    "no JSON", "no question", "empty answer", "LLM failed", "task failed")

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class Candidate:
    source: str
    question: str | None = None
    answer: str | None = None
    dropped: str | None = None  # the reason, when the reply gave no usable pair
    detail: str | None = None


@dataclass
class GoldenReport:
    path: Path
    seed: int
    sections: int  # long enough to sample from
    sampled: int
    tasks: int
    kept: list[dict[str, str]] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0

    def summary(self) -> dict[str, Any]:
        return {"golden": str(self.path), "seed": self.seed, "sections": self.sections, "sampled": self.sampled,
                "tasks": self.tasks, "kept": len(self.kept), "dropped": dict(self.dropped),
                "duplicates": self.duplicates}


def golden_messages(section: StoredSection) -> list[dict[str, str]]:
    user = (f"Page: {section.page_title}\nSection: {section.section_title}\nSource: {section.source}\n\n"
            f"Text:\n{section.text}")
    return [{"role": "system", "content": GOLDEN_PROMPT}, {"role": "user", "content": user}]


def parse_pair(source: str, reply: str) -> Candidate:
    """The question and answer of a reply, or why there is none."""
    value = first_json(reply)
    if value is None:
        return Candidate(source, dropped=NO_JSON, detail=" ".join(reply.split())[:80])
    question, answer = value.get("question"), value.get("answer")
    if not isinstance(question, str) or not question.strip():
        return Candidate(source, dropped=NO_QUESTION)
    if not isinstance(answer, str) or not answer.strip():
        return Candidate(source, dropped=EMPTY_ANSWER)
    return Candidate(source, " ".join(question.split()), answer.strip())


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def deduplicate(candidates: Sequence[Candidate], similarity: float) -> tuple[list[Candidate], int]:
    """The candidates whose question is not a duplicate of an earlier kept one's, and the duplicates' count."""
    kept: list[Candidate] = []
    seen: set[str] = set()
    token_sets: list[set[str]] = []
    for candidate in candidates:
        text = normalise_question(candidate.question or "")
        tokens = set(text.split())
        if text in seen or any(jaccard(tokens, other) >= similarity for other in token_sets):
            continue
        seen.add(text)
        token_sets.append(tokens)
        kept.append(candidate)
    return kept, len(candidates) - len(kept)


async def load_sections(settings: Settings) -> list[StoredSection]:
    """Every section of the index, in index order."""
    conn = await connect(settings)
    try:
        store = IndexStore(conn)
        return list((await store.sections(await store.require(settings.index_name))).values())
    finally:
        await conn.close()


def sample_sections(sections: Sequence[StoredSection], count: int, seed: int, min_chars: int) -> list[StoredSection]:
    """`count` sections of at least `min_chars`, drawn at random with `seed`, in index order."""
    eligible = [s for s in sections if len(s.text.strip()) >= min_chars]
    picked = set(random.Random(seed).sample(range(len(eligible)), min(count, len(eligible))))
    return [s for i, s in enumerate(eligible) if i in picked]


def _fit(section: StoredSection, budget: ContextBudget) -> StoredSection:
    """The section with its text trimmed to what the LLM's context leaves beside the prompt and the answer."""
    text = budget.fit(section.text, section.page_title, section.section_title, section.source)
    return StoredSection(section.source, section.page_title, section.section_title, text)


def _generate_batch(llm: LLMSettings, sections: list[StoredSection]) -> list[Candidate]:
    """A Ray task: one candidate per section, the sections of the batch asked at once."""
    return asyncio.run(_ask_batch(llm, sections))


async def _ask_batch(llm: LLMSettings, sections: Sequence[StoredSection]) -> list[Candidate]:
    client = open_llm(llm, GOLDEN_TEMPERATURE, WordCount())

    async def ask(section: StoredSection) -> Candidate:
        try:
            reply = await collect_text(client.stream(golden_messages(section)))
        except LLMFailure as exc:
            return Candidate(section.source, dropped=LLM_FAILED, detail=exc.reason)
        return parse_pair(section.source, reply)

    try:
        return list(await asyncio.gather(*(ask(s) for s in sections)))
    finally:
        await client.aclose()


async def generate_golden(
    settings: Settings,
    llm: LLMSettings,
    out: Path,
    count: int,
    seed: int | None = None,
    progress: ProgressCallback | None = None,
) -> GoldenReport:
    """Sample `count` sections, ask for a pair per section in Ray tasks, keep the distinct ones, write `out`."""
    import ray

    from docent.ray_runtime import ensure_ray

    seed = random.randrange(2**32) if seed is None else seed
    min_chars = settings.evaluation.golden_min_section_chars
    sections = await load_sections(settings)
    budget = ContextBudget(llm, GOLDEN_PROMPT)
    sampled = [_fit(s, budget) for s in sample_sections(sections, count, seed, min_chars)]
    if not sampled:
        raise EvalSetError(f"index {settings.index_name!r} has no section of {min_chars}+ characters to ask about")
    per_task = settings.evaluation.golden_sections_per_task
    batches = [sampled[i:i + per_task] for i in range(0, len(sampled), per_task)]
    eligible = sum(len(s.text.strip()) >= min_chars for s in sections)
    report = GoldenReport(out, seed, eligible, len(sampled), len(batches))
    ensure_ray(settings)
    task = ray.remote(num_cpus=TASK_CPUS)(_generate_batch).options(**_runtime_env(llm))
    candidates = await _gather_batches([task.remote(llm, batch) for batch in batches], batches, progress)
    usable = [c for c in candidates if c.dropped is None]
    report.dropped.update(c.dropped for c in candidates if c.dropped is not None)
    kept, report.duplicates = deduplicate(usable, settings.evaluation.golden_dedup_similarity)
    report.kept = [{"question": c.question, "source": c.source, "answer": c.answer} for c in kept]
    _write_lines(out, report.kept)
    return report


def _runtime_env(llm: LLMSettings) -> dict[str, Any]:
    """The LLM's key travels to the tasks' workers, which may run on other machines of a cluster."""
    key = os.environ.get(llm.api_key_env)
    return {"runtime_env": {"env_vars": {llm.api_key_env: key}}} if key else {}


async def _gather_batches(refs: list[Any], batches: list[list[StoredSection]], progress: ProgressCallback | None
                          ) -> list[Candidate]:
    """Each batch's candidates in batch order; a failed task drops its sections as "task failed"."""
    import ray

    total, done = sum(len(b) for b in batches), 0
    if progress:
        progress(0, total)
    futures = {asyncio.wrap_future(ref.future()): i for i, ref in enumerate(refs)}
    results: dict[int, list[Candidate]] = {}
    pending = set(futures)
    try:
        while pending:
            finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for future in finished:
                i = futures[future]
                try:
                    results[i] = future.result()
                except ray.exceptions.RayError as exc:
                    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:120]
                    results[i] = [Candidate(s.source, dropped=TASK_FAILED, detail=reason) for s in batches[i]]
                done += len(batches[i])
                if progress:
                    progress(done, total)
    except BaseException:  # interrupted: the tasks still running would only spend LLM calls
        for i, ref in enumerate(refs):
            if i not in results:
                ray.cancel(ref)
        raise
    return [c for i in range(len(batches)) for c in results[i]]


def _write_lines(path: Path, rows: Sequence[dict[str, str]]) -> None:
    from evaluation.runner import write_atomically

    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
