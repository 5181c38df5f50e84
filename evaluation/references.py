"""Reference answers for an eval set, written by a chosen LLM given each question's gold section.

As the reference guide's `QueryAgentWithContext` does, the LLM sees the question and the
text of its gold source, not retrieved chunks. The gold text is the index's chunks whose
`source` is the gold URL (anchor included), in order; when no chunk has that source (or
the URL has no anchor), the chunks of its page (URL before `#`). It is trimmed to what
the LLM's context leaves after the prompt and the answer. A question with no gold text in
the index gets an empty answer (`context_found: false`) without asking the LLM.

The output is a JSON array of `{question, source, answer, llm, context_found, context}`
(plus `error` for a failed LLM call), usable as `docent eval run --references`: rows with
an empty answer are left out there. The file is rewritten after each answer, so a
stopped run keeps what it finished; a new run into the same file asks only the questions
without an answer from the same LLM.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from docent.datasets import EvalSetError, read_json_rows
from docent.db import connect
from docent.llm import ChatLLM, LLMFailure, WordCount, open_llm
from docent.settings import LLMSettings, Settings
from docent.store import IndexRecord, IndexStore
from docent.text import collect_text
from docent.tokenizer import Tokenizer, load_tokenizer
from docent.types import page_of
from evaluation.retrieval import EvalQuestion
from evaluation.runner import EvalSet, write_atomically

REFERENCE_TEMPERATURE = 0.0
PROMPT_MARGIN_TOKENS = 32  # chat formatting the tokenizer does not see

REFERENCE_PROMPT = """\
You answer questions about software documentation, using only the documentation context given with the question.
Be succinct: a few sentences that answer the question, with the exact names of the settings, functions and commands \
the context uses. If the context does not answer the question, say so in one sentence."""

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class GoldText:
    text: str
    level: str | None  # "section", "page", or None: nothing in the index


@dataclass(frozen=True)
class ReferencesReport:
    path: Path
    rows: list[dict[str, Any]]  # the eval set's questions (first `limit`), in its order
    asked: int  # LLM calls this run made

    @property
    def answered(self) -> int:
        return sum(bool(r["answer"]) for r in self.rows)

    @property
    def without_context(self) -> int:
        return sum(not r["context_found"] for r in self.rows)

    @property
    def failed(self) -> int:
        return sum(bool(r.get("error")) for r in self.rows)

    def summary(self) -> dict[str, Any]:
        return {"references": str(self.path), "questions": len(self.rows), "asked": self.asked,
                "answered": self.answered, "without_gold_text": self.without_context, "failed": self.failed}


def reference_messages(question: str, context: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": REFERENCE_PROMPT},
            {"role": "user", "content": f"Question:\n{question}\n\nContext:\n{context}"}]


async def generate_references(
    settings: Settings,
    eval_set: EvalSet,
    llm: LLMSettings,
    out: Path,
    concurrency: int,
    limit: int | None = None,
    progress: ProgressCallback | None = None,
) -> ReferencesReport:
    """Answer the first `limit` questions (all by default) not yet answered by `llm` in `out`."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, not {concurrency}")
    questions = eval_set.questions[:limit]
    file = ReferencesFile(out, questions)
    pending = [q for q in questions if not file.finished(q.question, llm.name)]
    golds = await _gold_texts(settings, [q.source for q in pending]) if pending else {}
    budget = ContextBudget(llm, REFERENCE_PROMPT)
    done = len(questions) - len(pending)
    if progress:
        progress(done, len(questions))

    def answered(row: dict[str, Any]) -> None:
        nonlocal done
        file.add(row)
        done += 1
        if progress:
            progress(done, len(questions))

    client = open_llm(llm, REFERENCE_TEMPERATURE, WordCount())  # usage is not kept
    try:
        await _answer_all(client, budget, pending, golds, concurrency, file, answered)
    finally:
        await client.aclose()
    file.save()
    return ReferencesReport(out, [file.rows[q.question] for q in questions], file.asked)


class ReferencesFile:
    """The output file's rows: an earlier run's, replaced one by one as answers arrive, saved after each."""

    def __init__(self, path: Path, questions: Sequence[EvalQuestion]):
        self.path, self.questions, self.asked = path, questions, 0
        self.rows = load_previous(path)

    def finished(self, question: str, llm: str) -> bool:
        row = self.rows.get(question)
        return bool(row and row.get("answer") and not row.get("error") and row.get("llm") == llm)

    def add(self, row: dict[str, Any]) -> None:
        self.rows[row["question"]] = row
        self.save()

    def save(self) -> None:
        """The eval set's rows in its order, then any other rows the file held before."""
        ordered = [q.question for q in self.questions if q.question in self.rows]
        first = set(ordered)
        ordered += [q for q in self.rows if q not in first]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps([self.rows[q] for q in ordered], indent=2, ensure_ascii=False) + "\n"
        write_atomically(self.path, text)


async def _answer_all(
    client: ChatLLM, budget: ContextBudget, pending: Sequence[EvalQuestion], golds: dict[str, GoldText],
    concurrency: int, file: ReferencesFile, answered: Callable[[dict[str, Any]], None],
) -> None:
    """Answer each pending question, `concurrency` LLM calls at a time, handing each row to `answered` as it comes."""
    llm, slots = client.settings, asyncio.Semaphore(concurrency)

    async def one(question: EvalQuestion) -> dict[str, Any]:
        gold = golds.get(question.source, GoldText("", None))
        if gold.level is None:
            return _row(question, llm, gold, "")
        async with slots:
            file.asked += 1
            return await _answer(client, budget, question, gold, llm)

    tasks = [asyncio.ensure_future(one(q)) for q in pending]
    try:
        for finished in asyncio.as_completed(tasks):
            answered(await finished)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _answer(
    client: ChatLLM, budget: ContextBudget, question: EvalQuestion, gold: GoldText, llm: LLMSettings
) -> dict[str, Any]:
    context = budget.fit(gold.text, question.question)
    try:
        reply = await collect_text(client.stream(reference_messages(question.question, context)))
    except LLMFailure as exc:
        return _row(question, llm, gold, "", f"the LLM failed: {exc.reason}")
    answer = _answer_text(reply)
    return _row(question, llm, gold, answer, None if answer else "the LLM gave an empty answer")


def _row(question: EvalQuestion, llm: LLMSettings, gold: GoldText, answer: str, error: str | None = None) -> dict:
    row = {"question": question.question, "source": question.source, "answer": answer, "llm": llm.name,
           "context_found": gold.level is not None, "context": gold.level}
    return row | ({"error": error} if error else {})


def _answer_text(reply: str) -> str:
    """The reply, or its `answer` when the LLM answered in JSON anyway."""
    text = reply.strip()
    try:
        value = json.loads(text.removeprefix("```json").removeprefix("```").removesuffix("```"))
    except json.JSONDecodeError:
        return text
    return str(value["answer"]).strip() if isinstance(value, dict) and "answer" in value else text


class ContextBudget:
    """Trims a text to what an LLM's context leaves beside a system prompt, other texts and the longest answer.

    A token covers at least one UTF-8 byte, so a text whose bytes fit needs no counting; the
    LLM's tokenizer is loaded only for one that may not fit (at once when one is configured, so
    that a missing one is an error before any work).
    """

    def __init__(self, llm: LLMSettings, system_prompt: str):
        self.llm, self.system_prompt = llm, system_prompt
        self._tokenizer = load_tokenizer(llm.tokenizer) if llm.tokenizer else None

    @property
    def tokenizer(self) -> Tokenizer:
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.llm.tokenizer)
        return self._tokenizer

    def fit(self, text: str, *beside: str) -> str:
        room = self.llm.context_length - self.llm.max_tokens - PROMPT_MARGIN_TOKENS
        if sum(len(t.encode()) for t in (self.system_prompt, *beside, text)) <= room:
            return text
        used = sum(self.tokenizer.count(t) for t in (self.system_prompt, *beside))
        return self.tokenizer.truncate(text, room - used)


async def _gold_texts(settings: Settings, sources: Sequence[str]) -> dict[str, GoldText]:
    conn = await connect(settings)
    try:
        index = await IndexStore(conn).require(settings.index_name)
        return await gold_texts(conn, index, sources)
    finally:
        await conn.close()


async def gold_texts(conn: Any, index: IndexRecord, sources: Sequence[str]) -> dict[str, GoldText]:
    """source → its section's text, else its page's (the page's sections joined), else nothing."""
    store = IndexStore(conn)
    exact = await store.sections(index, [s for s in sources if "#" in s])
    pages = await store.page_sections(index, sorted({page_of(s) for s in sources if s not in exact}))
    found = {s: GoldText(exact[s].text, "section") for s in sources if s in exact}
    found |= {
        s: GoldText("\n\n".join(section.text for section in pages[page_of(s)]), "page")
        for s in sources if s not in exact and page_of(s) in pages
    }
    return found


def load_previous(path: Path) -> dict[str, dict[str, Any]]:
    """question → row of an earlier run's output (none when the file does not exist).

    A file that is not one (a row without `question` or `llm`, like a hand-made references
    file) is refused rather than overwritten.
    """
    if not path.exists():
        return {}
    rows = {}
    for where, row in read_json_rows(path, "references file"):
        if not isinstance(row, dict) or not isinstance(row.get("question"), str) or "llm" not in row:
            raise EvalSetError(f"{path}, {where}: not a row written by `docent eval references`; use another --out")
        rows[row["question"]] = row
    return rows
