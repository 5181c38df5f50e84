"""Ragas-style metrics of one answered question, graded by a judge LLM.

- faithfulness: the LLM lists the answer's atomic claims, then says for each whether the
  contexts the answer was given support it; supported / claims.
- answer_relevancy: the LLM writes `relevancy_questions` questions the answer would
  answer; the mean cosine of their embeddings with the original question's (0 when the
  LLM calls the answer noncommittal: "I don't know" answers nothing).
- context_precision (needs a reference answer): for each context, in rank order, the LLM
  says whether it is useful for reaching the reference answer; average precision over
  the useful ones (0 when none is).
- context_recall (needs a reference answer): the reference's sentences, each judged
  attributable to the contexts or not; attributable / sentences.

Every reply is asked for as JSON, accepted anywhere in the reply (fenced or not); a
malformed one is asked again up to `attempts` times, after which (or when the endpoint
fails) the metric is unscored (None) with the reason. `RagasScorer.score` never raises.
The `ragas` library is not used: see docs/evaluation.md for why.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any, TypeVar

from docent.embedding.model import Embedder
from docent.errors import UpstreamFailure
from docent.llm import LLMFailure, WordCount, open_llm
from docent.settings import LLMSettings
from docent.text import collect_text, first_json
from evaluation.judge import JUDGE_TEMPERATURE
from evaluation.metrics import RAGAS_METRICS, cosine_similarity

FAITHFULNESS, ANSWER_RELEVANCY, CONTEXT_PRECISION, CONTEXT_RECALL = RAGAS_METRICS
NEEDS_REFERENCE = frozenset({CONTEXT_PRECISION, CONTEXT_RECALL})
_EXCERPT_CHARS = 80  # of an unparseable reply, in the error

_JSON_ONLY = "Reply with one JSON object and nothing else:"

CLAIMS_PROMPT = f"""\
You split answers to questions about software documentation into claims.
Given a question and an answer, list every atomic claim the answer makes: short statements that can each be checked \
on their own, with pronouns replaced by what they refer to. Leave out citation markers like [1] and anything that \
claims nothing (greetings, offers to help).
{_JSON_ONLY}
{{"claims": ["<claim>", ...]}}"""

SUPPORT_PROMPT = f"""\
You check claims against documentation passages.
For each numbered claim, say whether the passages support it: true when it can be inferred from the passages, \
false when they do not say it or contradict it.
{_JSON_ONLY}
{{"verdicts": [<true or false for claim 1>, <claim 2>, ...]}}"""

QUESTIONS_PROMPT = f"""\
You write the questions an answer answers.
Given an answer from a documentation assistant, write {{n}} different questions that this answer would answer. \
Also say whether the answer is noncommittal (evasive or vague, such as "I don't know" or "the docs do not say").
{_JSON_ONLY}
{{{{"questions": ["<question>", ...], "noncommittal": <true or false>}}}}"""

USEFUL_PROMPT = f"""\
You judge retrieved documentation passages.
Given a question, its reference answer and numbered passages, say for each passage, in order, whether it is useful \
for reaching the reference answer.
{_JSON_ONLY}
{{"verdicts": [<true or false for passage 1>, <passage 2>, ...]}}"""

ATTRIBUTABLE_PROMPT = f"""\
You check a reference answer against documentation passages.
For each numbered sentence of the reference answer, say whether it can be attributed to the passages: true when the \
passages state or imply it, false otherwise.
{_JSON_ONLY}
{{"verdicts": [<true or false for sentence 1>, <sentence 2>, ...]}}"""

_TRUE = {"true", "yes", "1", "supported", "useful", "attributable", "attributed"}
_FALSE = {"false", "no", "0", "unsupported", "not supported", "not useful", "not attributable", "not attributed"}
_VERDICT_KEYS = ("verdict", "supported", "useful", "attributed", "attributable", "value")
_ITEM_TEXT_KEYS = ("claim", "statement", "question", "text")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9`\"'(\[])")
_CITATION = re.compile(r"\s*\[\d+(?:\s*,\s*\d+)*\]")

T = TypeVar("T")


class UnparseableReply(UpstreamFailure, ValueError):
    """A judge reply without what was asked for; the message says why."""


@dataclass(frozen=True)
class MetricScore:
    score: float | None  # None: unscored, `error` says why
    attempts: int  # LLM replies asked for
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)  # the counts behind the score


@dataclass(frozen=True)
class RagasScores:
    """The metrics computed for one answer; a metric that does not apply (no reference) is absent."""

    metrics: dict[str, MetricScore]

    @property
    def values(self) -> dict[str, float | None]:
        return {name: m.score for name, m in self.metrics.items()}

    @property
    def scored(self) -> dict[str, MetricScore]:
        return {name: m for name, m in self.metrics.items() if m.score is not None}

    def to_json(self) -> dict[str, Any]:
        return {name: asdict(m) for name, m in self.metrics.items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RagasScores:
        """Raises KeyError/TypeError on a malformed object."""
        return cls({name: MetricScore(m["score"], m["attempts"], m.get("error"), m.get("detail") or {})
                    for name, m in data.items() if name in RAGAS_METRICS})


# --- parsing -------------------------------------------------------------------------


def find_json(reply: str, key: str, bare_array: bool = True) -> Any:
    """The value of `key` in the first JSON object of the reply that has it, fenced or not; else
    (with `bare_array`) the first JSON array in the reply. Raises `UnparseableReply`."""
    found = first_json(reply, lambda value: isinstance(value, dict) and key in value)
    if found is not None:
        return found[key]
    array = first_json(reply, lambda value: isinstance(value, list)) if bare_array else None
    if array is not None:
        return array
    raise UnparseableReply(f"no JSON with {key!r} in the reply: {_excerpt(reply)!r}")


def parse_texts(reply: str, key: str, allow_empty: bool = False) -> list[str]:
    """The non-empty strings (or objects holding one) listed under `key`; at least one unless `allow_empty`."""
    items = find_json(reply, key)
    if not isinstance(items, list):
        raise UnparseableReply(f"{key!r} is not a list")
    texts = [t for t in (_item_text(item) for item in items) if t]
    if not texts and not allow_empty:
        raise UnparseableReply(f"no {key} in the reply")
    return texts


def _item_text(item: Any) -> str:
    if isinstance(item, dict):
        item = next((item[k] for k in _ITEM_TEXT_KEYS if isinstance(item.get(k), str)), "")
    if not isinstance(item, str):
        raise UnparseableReply(f"{item!r} is not text")
    return item.strip()


def parse_verdicts(reply: str, expected: int) -> list[bool]:
    """Exactly `expected` yes/no verdicts under "verdicts" (true/false, 1/0, "yes"/"no", or objects holding one)."""
    items = find_json(reply, "verdicts")
    if not isinstance(items, list):
        raise UnparseableReply("'verdicts' is not a list")
    if len(items) != expected:
        raise UnparseableReply(f"{len(items)} verdicts for {expected} items")
    return [as_verdict(item) for item in items]


def as_verdict(value: Any) -> bool:
    if isinstance(value, dict):
        key = next((k for k in _VERDICT_KEYS if k in value), None)
        if key is None:
            raise UnparseableReply(f"no verdict in {value!r}")
        value = value[key]
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise UnparseableReply(f"verdict {value!r} is neither true nor false")


def parse_relevancy(reply: str, wanted: int) -> tuple[list[str], bool]:
    """(up to `wanted` questions, noncommittal) from a relevancy reply."""
    questions = parse_texts(reply, "questions")[:wanted]
    try:
        noncommittal = as_verdict(find_json(reply, "noncommittal", bare_array=False))
    except UnparseableReply:  # missing or not a yes/no: the answer is taken as committal
        noncommittal = False
    return questions, noncommittal


def _excerpt(reply: str) -> str:
    return " ".join(reply.split())[:_EXCERPT_CHARS]


# --- maths ---------------------------------------------------------------------------


def average_precision(useful: Sequence[bool]) -> float:
    """Mean of precision@k over the ranks k of the useful items; 0 when none is useful."""
    hits, total = 0, 0.0
    for rank, is_useful in enumerate(useful, start=1):
        if is_useful:
            hits += 1
            total += hits / rank
    return total / hits if hits else 0.0


def fraction(verdicts: Sequence[bool]) -> float:
    return sum(verdicts) / len(verdicts) if verdicts else 0.0


def split_sentences(text: str) -> list[str]:
    """Sentences of a (reference) answer: split after . ! ? followed by a capital, digit or quote."""
    return [s.strip() for s in _SENTENCE_END.split(_CITATION.sub("", text).strip()) if s.strip()]


def numbered(items: Sequence[str], brackets: bool = False) -> str:
    return "\n\n".join(f"[{i}] {t}" if brackets else f"{i}. {t}" for i, t in enumerate(items, start=1))


# --- the scorer ----------------------------------------------------------------------


class _Unscored(UpstreamFailure):
    def __init__(self, reason: str, attempts: int):
        super().__init__(reason)
        self.reason, self.attempts = reason, attempts


class RagasScorer:
    """Scores answers with one judge LLM and an embedder (for answer relevancy); `aclose` when done."""

    def __init__(self, llm: LLMSettings, embedder: Embedder, attempts: int = 3, relevancy_questions: int = 3):
        if attempts < 1 or relevancy_questions < 1:
            raise ValueError("attempts and relevancy_questions must be at least 1")
        self.llm, self.embedder = llm, embedder
        self.attempts, self.relevancy_questions = attempts, relevancy_questions
        self._client = open_llm(llm, JUDGE_TEMPERATURE, WordCount())
        self._embedding = threading.Lock()  # one forward pass at a time through the shared model

    @property
    def name(self) -> str:
        return self.llm.name

    @property
    def signature(self) -> list[Any]:
        """What the scores depend on besides the inputs: part of each result's key."""
        return ["ragas-1", self.llm.name, self.llm.model, self.relevancy_questions, self.embedder.name]

    async def score(
        self, question: str, answer: str, contexts: Sequence[str], reference: str | None,
        metrics: Collection[str] | None = None,
    ) -> RagasScores:
        """The applicable metrics among `metrics` (default: all); context metrics only with a reference."""
        wanted = [m for m in (metrics or RAGAS_METRICS) if reference or m not in NEEDS_REFERENCE]
        jobs = {
            FAITHFULNESS: lambda: self._faithfulness(question, answer, contexts),
            ANSWER_RELEVANCY: lambda: self._answer_relevancy(question, answer),
            CONTEXT_PRECISION: lambda: self._context_precision(question, reference or "", contexts),
            CONTEXT_RECALL: lambda: self._context_recall(reference or "", contexts),
        }
        results = await asyncio.gather(*(self._guarded(jobs[m]) for m in wanted))
        return RagasScores(dict(zip(wanted, results, strict=True)))

    async def _guarded(self, job: Callable[[], Any]) -> MetricScore:
        try:
            return await job()
        except _Unscored as exc:
            return MetricScore(None, exc.attempts, exc.reason)
        except Exception as exc:  # noqa: BLE001 - a metric failing must not stop the run
            return MetricScore(None, 0, f"{type(exc).__name__}: {exc}")

    async def _faithfulness(self, question: str, answer: str, contexts: Sequence[str]) -> MetricScore:
        user = f"Question:\n{question}\n\nAnswer:\n{answer}"
        claims, asked = await self._ask(CLAIMS_PROMPT, user, lambda r: parse_texts(r, "claims", allow_empty=True))
        if not claims:
            return MetricScore(None, asked, "the answer states no claims", {"claims": 0})
        if not contexts:  # nothing to support the claims
            return MetricScore(0.0, asked, detail={"claims": len(claims), "supported": 0})
        user = f"Passages:\n{numbered(contexts, brackets=True)}\n\nClaims:\n{numbered(claims)}"
        verdicts, more = await self._ask(SUPPORT_PROMPT, user, lambda r: parse_verdicts(r, len(claims)), asked)
        detail = {"claims": len(claims), "supported": sum(verdicts)}
        return MetricScore(fraction(verdicts), asked + more, detail=detail)

    async def _answer_relevancy(self, question: str, answer: str) -> MetricScore:
        system = QUESTIONS_PROMPT.format(n=self.relevancy_questions)
        parse = partial(parse_relevancy, wanted=self.relevancy_questions)
        (questions, noncommittal), asked = await self._ask(system, f"Answer:\n{answer}", parse)
        vectors = await asyncio.to_thread(self._embed, [question, *questions])
        similarity = sum(cosine_similarity(vectors[0], v) for v in vectors[1:]) / len(questions)
        detail = {"questions": questions, "noncommittal": noncommittal}
        return MetricScore(0.0 if noncommittal else similarity, asked, detail=detail)

    async def _context_precision(self, question: str, reference: str, contexts: Sequence[str]) -> MetricScore:
        if not contexts:
            return MetricScore(0.0, 0, detail={"contexts": 0, "useful": 0})
        user = f"Question:\n{question}\n\nReference answer:\n{reference}\n\nPassages:\n{numbered(contexts, True)}"
        useful, asked = await self._ask(USEFUL_PROMPT, user, lambda r: parse_verdicts(r, len(contexts)))
        return MetricScore(average_precision(useful), asked, detail={"contexts": len(contexts), "useful": sum(useful)})

    async def _context_recall(self, reference: str, contexts: Sequence[str]) -> MetricScore:
        sentences = split_sentences(reference)
        if not contexts or not sentences:
            return MetricScore(0.0, 0, detail={"sentences": len(sentences), "attributable": 0})
        user = f"Passages:\n{numbered(contexts, True)}\n\nReference answer sentences:\n{numbered(sentences)}"
        verdicts, asked = await self._ask(ATTRIBUTABLE_PROMPT, user, lambda r: parse_verdicts(r, len(sentences)))
        return MetricScore(fraction(verdicts), asked, detail={"sentences": len(sentences), "attributable": sum(verdicts)})

    async def _ask(self, system: str, user: str, parse: Callable[[str], T], asked_before: int = 0) -> tuple[T, int]:
        """(parsed reply, replies asked for); raises `_Unscored` after `attempts` malformed replies or a failure."""
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        error = ""
        for attempt in range(1, self.attempts + 1):
            try:
                reply = await self._reply(messages)
            except LLMFailure as exc:
                raise _Unscored(f"the judge failed: {exc.reason}", asked_before + attempt) from None
            try:
                return parse(reply), attempt
            except UnparseableReply as exc:
                error = str(exc)
        raise _Unscored(f"{error} (after {self.attempts} attempts)", asked_before + self.attempts)

    async def _reply(self, messages: list[dict[str, str]]) -> str:
        return await collect_text(self._client.stream(messages))

    def _embed(self, texts: list[str]) -> Any:
        with self._embedding:
            return self.embedder.embed(texts)

    async def aclose(self) -> None:
        await self._client.aclose()
