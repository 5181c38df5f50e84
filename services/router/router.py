"""Which LLM answers: the request's choice, the router's, or the only one configured."""

from __future__ import annotations

from docent.llm import require_llm
from docent.routing import RouteDecision
from docent.types import EXTRACTIVE_LLM as EXTRACTIVE
from docent.types import Route


def choose_llm(
    decision: RouteDecision | None, llms: list[str], oss_llm: str | None, strong_llm: str | None, requested: str | None
) -> Route:
    """The LLM that should answer, and why: the request's choice, the router's, or the only one there is."""
    if requested:
        require_llm(requested, [*llms, EXTRACTIVE])
        return Route(llm=requested, reason="asked for by the request")
    if not llms:
        return Route(llm=EXTRACTIVE, reason="no LLM configured: sentences from the sources")
    if oss_llm and strong_llm:
        if decision is None:
            return Route(llm=strong_llm, reason="no router trained (docent train router): the strong LLM")
        chosen = oss_llm if decision.use_oss else strong_llm
        return Route(llm=chosen, probability_oss=decision.probability_oss, reason=decision.reason)
    chosen = oss_llm or strong_llm or llms[0]
    return Route(llm=chosen, reason="the only LLM configured" if len(llms) == 1 else "the configured LLM")
