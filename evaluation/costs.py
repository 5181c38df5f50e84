"""Cost analysis: what answering an eval set costs, for the LLM that answered and for every priced LLM.

The reference compares LLMs by quality against $ per query. Prices come from settings: each
configured LLM's own, plus `evaluation.prices` for LLMs only priced for comparison. Tokens
are counted with a real tokenizer over the prompt the generator builds (system prompt,
numbered sources, question) and the answer, so an extractive run, which spends nothing,
still says what each LLM would have cost on the same contexts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import fmean
from typing import Any

from docent.settings import Settings
from docent.tokenizer import Tokenizer, load_tokenizer
from docent.types import SearchHit
from services.generator.prompt import build_messages

PRICE_UNIT_TOKENS = 1_000_000  # prices are $ per million tokens
COST_PER_QUERY = "cost_per_query"
_EVERY_CONTEXT = 10**9  # a token budget no prompt reaches: each context the answer was given is counted


@dataclass(frozen=True)
class TokenCounts:
    mean_prompt_tokens: float
    mean_sampled_tokens: float


def count_tokens(rows: Sequence[dict[str, Any]], settings: Settings, tokenizer: Tokenizer | None = None) -> TokenCounts:
    """Mean prompt and answer tokens over the answered rows (zeros when none was answered)."""
    answered = [r for r in rows if r.get("answer") is not None and not r.get("error")]
    if not answered:
        return TokenCounts(0.0, 0.0)
    tokenizer = tokenizer or load_tokenizer(settings.embedding.model)
    prompts = [_prompt_tokens(r, settings, tokenizer) for r in answered]
    answers = [tokenizer.count(r["answer"]) for r in answered]
    return TokenCounts(fmean(prompts), fmean(answers))


def _prompt_tokens(row: dict[str, Any], settings: Settings, tokenizer: Tokenizer) -> int:
    hits = [
        SearchHit(rank=rank, score=0.0, source=source, text=text, chunk_id=rank)
        for rank, (source, text) in enumerate(zip(row.get("sources") or [], row.get("contexts") or []), start=1)
    ]
    build = build_messages(settings.generation.system_prompt, row["question"], hits, _EVERY_CONTEXT, tokenizer)
    return build.prompt_tokens


def price_table(settings: Settings) -> dict[str, tuple[float, float]]:
    """LLM name → ($ per million prompt tokens, $ per million sampled tokens); configured LLMs win."""
    table = {name: (p.prompt, p.sampled) for name, p in settings.evaluation.prices.items()}
    table.update({m.name: (m.prompt_price, m.sampled_price) for m in settings.generation.llms})
    return table


def cost_metrics(rows: Sequence[dict[str, Any]], settings: Settings, counts: TokenCounts) -> dict[str, float]:
    """`cost_per_query` (what the answering LLMs charged, from the run's usage) and `cost_per_query/NAME`
    (the same prompts and answers at NAME's prices), plus the mean token counts."""
    answered = [r for r in rows if not r.get("error")]
    metrics = {
        "mean_prompt_tokens": counts.mean_prompt_tokens,
        "mean_sampled_tokens": counts.mean_sampled_tokens,
        COST_PER_QUERY: fmean(r.get("cost") or 0.0 for r in answered) if answered else 0.0,
    }
    for name, (prompt_price, sampled_price) in price_table(settings).items():
        spent = prompt_price * counts.mean_prompt_tokens + sampled_price * counts.mean_sampled_tokens
        metrics[f"{COST_PER_QUERY}/{name}"] = spent / PRICE_UNIT_TOKENS
    return metrics
