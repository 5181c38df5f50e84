"""Follow-up questions made to stand alone before retrieval.

"How do I create an actor?" then "and how do I kill it?": the follow-up alone retrieves
nothing about actors. With an LLM configured, the cheapest one rewrites the follow-up
from the conversation (a short prompt, its cost counted); without one, or when it fails,
`docent.conversation.condense_offline` carries the conversation's subject into the search.
A question with no history is not condensed at all.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from docent.conversation import condense_offline
from docent.errors import UsageError
from docent.llm import LLMClient, LLMFailure, WordCount, cost_of, find_llm, open_llm
from docent.settings import LLMSettings, Settings
from docent.types import CondenserKind, Role, Turn, Usage

log = logging.getLogger(__name__)

OFFLINE = "offline"  # what a standalone question made without an LLM says it was condensed by
# Preambles an LLM puts before the question it was asked to write alone.
_PREAMBLES = ("standalone question:", "rewritten question:", "question:")
_QUOTES = "\"'`“”"


@dataclass
class Condensed:
    """A question as searched for: `standalone`, and what making it cost (nothing offline)."""

    question: str
    standalone: str
    by: str = ""  # the LLM's name, OFFLINE, or "" when there was no history to read
    usage: Usage = field(default_factory=Usage)
    cost: float = 0.0
    ms: float = 0.0

    @property
    def rewritten(self) -> bool:
        return self.standalone != self.question

    @property
    def fused(self) -> bool:
        """Searched for both ways: offline, the standalone question leans on the subject's words, and a
        question that stood alone after all keeps its own hits (benchmarks.md, conversations)."""
        return self.by == OFFLINE and self.rewritten


def cheapest_llm(llms: Sequence[LLMSettings]) -> LLMSettings | None:
    """The configured LLM with the lowest price per token (the first of equals)."""
    return min(llms, key=lambda llm: llm.prompt_price + llm.sampled_price, default=None)


def condense_messages(prompt: str, question: str, turns: Sequence[Turn], max_turn_chars: int) -> list[dict[str, str]]:
    """The condensing prompt: the conversation as a transcript, then the question to rewrite."""
    transcript = "\n".join(
        f"{'User' if turn.role == Role.USER else 'Assistant'}: {turn.content[:max_turn_chars]}" for turn in turns
    )
    return [
        {"role": "system", "content": prompt},
        {"role": "user", "content": f"Conversation:\n{transcript}\n\nLast question: {question}"},
    ]


def clean_standalone(reply: str, max_chars: int) -> str | None:
    """The question in an LLM's reply (first line, no preamble or quotes); None when unusable."""
    lines = [line.strip() for line in reply.strip().splitlines() if line.strip()]
    if not lines:
        return None
    text = lines[0]
    if text.lower().startswith(_PREAMBLES):
        text = text.split(":", 1)[1].strip()
    text = text.strip(_QUOTES).strip()
    return text if text and len(text) <= max_chars else None


class Condenser:
    """Makes follow-ups stand alone: by an LLM when one is configured (or forced), else offline."""

    def __init__(self, settings: Settings):
        self.settings = settings.conversation
        self.max_chars = settings.serving.max_query_chars
        self.llm_settings = self._choose_llm(settings)
        self._llm: LLMClient | None = None

    def _choose_llm(self, settings: Settings) -> LLMSettings | None:
        if self.settings.condenser == CondenserKind.OFFLINE:
            return None
        llms = settings.generation.llms
        if self.settings.condense_llm:
            return find_llm(llms, self.settings.condense_llm, "conversation.condense_llm")
        if self.settings.condenser == CondenserKind.LLM and not llms:
            raise UsageError("conversation.condenser is llm, but no LLM is configured (generation.llms)")
        return cheapest_llm(llms)

    @property
    def llm(self) -> LLMClient | None:
        if self._llm is None and self.llm_settings is not None:
            bounded = self.llm_settings.model_copy(update={"max_tokens": self.settings.condense_max_tokens})
            self._llm = open_llm(bounded, 0.0, WordCount())  # usage it doesn't report is estimated in words
        return self._llm

    async def condense(self, question: str, turns: Sequence[Turn]) -> Condensed:
        if not turns:
            return Condensed(question, question)
        started = time.perf_counter()
        cut = self.settings.max_turn_chars  # a client's history may be long: only its end is read
        turns = [Turn(role=t.role, content=t.content[:cut]) for t in list(turns)[-self.settings.max_turns:]]
        condensed = await self._by_llm(question, turns) if self.llm is not None else None
        if condensed is None:
            condensed = Condensed(question, condense_offline(question, turns), OFFLINE)
        condensed.ms = round((time.perf_counter() - started) * 1000, 2)
        return condensed

    async def _by_llm(self, question: str, turns: list[Turn]) -> Condensed | None:
        """The LLM's standalone question; None (the offline way is used) when it fails or writes no question."""
        llm = self.llm
        assert llm is not None
        messages = condense_messages(self.settings.condense_prompt, question, turns, self.settings.max_turn_chars)
        pieces: list[str] = []
        usage = Usage()
        try:
            async for piece in llm.stream(messages):
                if isinstance(piece, Usage):
                    usage = piece
                else:
                    pieces.append(piece)
        except LLMFailure as exc:
            log.warning("condensing by %s failed (%s): searching offline", llm.name, exc.reason)
            return None
        standalone = clean_standalone("".join(pieces), self.max_chars)
        if standalone is None:
            log.warning("condensing by %s gave no usable question: searching offline", llm.name)
            return None
        return Condensed(question, standalone, llm.name, usage, cost_of(llm.settings, usage))

    async def aclose(self) -> None:
        if self._llm is not None:
            await self._llm.aclose()
