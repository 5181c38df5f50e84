"""An LLM judge: scores a generated answer 1–5 against a reference answer, with its reasoning.

As the reference's evaluator does, the judge sees the query, the reference answer and the
generated answer, at temperature 0. It is asked for `{"score": N, "reasoning": "..."}`;
the JSON is accepted anywhere in the reply (fenced or not), and a `score: N` line is
accepted when there is no JSON. A reply without a score in range is asked again, up to
`max_attempts` times; after that, or when the endpoint fails, the verdict is unscored
with the reason. `score` never raises.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from docent.errors import UpstreamFailure
from docent.llm import LLMFailure, WordCount, open_llm
from docent.settings import LLMSettings
from docent.text import collect_text, first_json

MIN_SCORE, MAX_SCORE = 1, 5
DEFAULT_JUDGE_ATTEMPTS = 3
JUDGE_TEMPERATURE = 0.0
_REPLY_EXCERPT_CHARS = 80  # of an unparseable reply, in the error

JUDGE_SYSTEM_PROMPT = f"""\
You grade answers to questions about software documentation.
You are given a query, a reference answer written by an expert, and a generated answer.
Rate how well the generated answer answers the query, using the reference answer as the truth:
{MIN_SCORE} means wrong, unhelpful or missing; {MAX_SCORE} means correct, complete and as useful as the reference.
A generated answer may be worded differently from the reference; judge its content, not its wording.
Reply with one JSON object and nothing else:
{{"score": <an integer from {MIN_SCORE} to {MAX_SCORE}>, "reasoning": "<one or two sentences explaining the score>"}}"""

_SCORE_LINE = re.compile(r"^[\s*#>-]*score[\s*]*[:=]\s*\**\s*(-?\d+(?:\.\d+)?)", re.IGNORECASE | re.MULTILINE)
_REASONING_LINE = re.compile(r"^[\s*#>-]*reasoning[\s*]*[:=]\s*\**\s*(.*)$", re.IGNORECASE | re.MULTILINE | re.DOTALL)


class UnparseableVerdict(UpstreamFailure, ValueError):
    """A judge's reply without a usable score; the message says why."""


@dataclass(frozen=True)
class JudgeVerdict:
    score: int | None  # None: unscored, `error` says why
    reasoning: str
    attempts: int
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def judge_messages(question: str, reference: str, answer: str) -> list[dict[str, str]]:
    user = f"Query:\n{question}\n\nReference answer:\n{reference}\n\nGenerated answer:\n{answer}"
    return [{"role": "system", "content": JUDGE_SYSTEM_PROMPT}, {"role": "user", "content": user}]


def parse_verdict(reply: str) -> tuple[int, str]:
    """(score, reasoning) from a judge's reply; raises `UnparseableVerdict`."""
    found = _json_verdict(reply)
    if found is None:
        match = _SCORE_LINE.search(reply)
        if match is None:
            excerpt = " ".join(reply.split())[:_REPLY_EXCERPT_CHARS]
            raise UnparseableVerdict(f"no score in the reply: {excerpt!r}")
        reasoning_match = _REASONING_LINE.search(reply)
        reasoning = reasoning_match.group(1) if reasoning_match else _SCORE_LINE.sub("", reply)
        found = (match.group(1), reasoning)
    raw, reasoning = found
    score = _as_score(raw)
    if not MIN_SCORE <= score <= MAX_SCORE:
        raise UnparseableVerdict(f"score {score} is outside {MIN_SCORE}–{MAX_SCORE}")
    return score, str(reasoning or "").strip()


def _json_verdict(reply: str) -> tuple[Any, Any] | None:
    """(score, reasoning) of the first JSON object in the reply that has a `score`."""
    value = first_json(reply, lambda v: isinstance(v, dict) and "score" in v)
    return None if value is None else (value["score"], value.get("reasoning", ""))


def _as_score(raw: Any) -> int:
    """An integral score from an int, an integral float or a numeric string."""
    if isinstance(raw, bool):
        raise UnparseableVerdict(f"score {raw!r} is not a number")
    try:
        number = float(raw)
    except (TypeError, ValueError):
        raise UnparseableVerdict(f"score {raw!r} is not a number") from None
    if not number.is_integer():
        raise UnparseableVerdict(f"score {raw!r} is not a whole number")
    return int(number)


class Judge:
    """Scores answers with one configured LLM; `aclose` when done."""

    def __init__(self, llm: LLMSettings, max_attempts: int = DEFAULT_JUDGE_ATTEMPTS):
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, not {max_attempts}")
        self.llm, self.max_attempts = llm, max_attempts
        self._client = open_llm(llm, JUDGE_TEMPERATURE, WordCount())

    @property
    def name(self) -> str:
        return self.llm.name

    async def score(self, question: str, reference: str, answer: str) -> JudgeVerdict:
        messages = judge_messages(question, reference, answer)
        error = ""
        for attempt in range(1, self.max_attempts + 1):
            try:
                reply = await self._reply(messages)
            except LLMFailure as exc:
                return JudgeVerdict(None, "", attempt, f"the judge failed: {exc.reason}")
            try:
                score, reasoning = parse_verdict(reply)
            except UnparseableVerdict as exc:
                error = str(exc)
                continue
            return JudgeVerdict(score, reasoning, attempt)
        return JudgeVerdict(None, "", self.max_attempts, f"{error} (after {self.max_attempts} attempts)")

    async def _reply(self, messages: list[dict[str, str]]) -> str:
        return await collect_text(self._client.stream(messages))

    async def aclose(self) -> None:
        await self._client.aclose()
