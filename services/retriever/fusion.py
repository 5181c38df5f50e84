"""Combining ranked lists of chunk ids, and keeping results to distinct pages."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

Ranked = list[tuple[int, float]]  # (chunk id, score), best first


def reciprocal_rank_fusion(rankings: Sequence[Ranked], weights: Sequence[float], k: int) -> Ranked:
    """Σ weight / (k + rank) over the rankings a chunk appears in (Cormack et al., 2009)."""
    fused: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, (chunk_id, _) in enumerate(ranking, start=1):
            fused[chunk_id] = fused.get(chunk_id, 0.0) + weight / (k + rank)
    return sorted(fused.items(), key=lambda item: -item[1])


def with_page_evidence(
    fused: Ranked, rankings: Sequence[Ranked], weights: Sequence[float], k: int, page_of: Callable[[int], str], weight: float
) -> Ranked:
    """`fused` with each chunk's score raised by `weight` × its page's reciprocal-rank score.

    A page's rank in a ranking is the place of its best chunk among pages. Small chunks
    split an answer: the semantic and the lexical ranking often find the right page
    through different chunks, and chunk-level fusion credits neither with the agreement.
    """
    if not weight:
        return fused
    pages = reciprocal_rank_fusion([_first_per_page(ranking, page_of) for ranking in rankings], weights, k)
    page_scores = {page_rank[0]: page_rank[1] for page_rank in pages}
    raised = [(chunk_id, score + weight * page_scores[page_of(chunk_id)]) for chunk_id, score in fused]
    return sorted(raised, key=lambda item: -item[1])  # stable: ties keep the chunk-level order


def _first_per_page(ranking: Ranked, page_of: Callable[[int], str]) -> list[tuple[str, float]]:
    seen: dict[str, float] = {}
    for chunk_id, score in ranking:
        seen.setdefault(page_of(chunk_id), score)
    return list(seen.items())


def insert_lexical(semantic: Ranked, lexical: Ranked, position: int) -> Ranked:
    """The reference's way: lexical hits inserted after the first `position` semantic ones."""
    combined = semantic[:position] + lexical + semantic[position:]
    seen: set[int] = set()
    unique = []
    for chunk_id, score in combined:
        if chunk_id not in seen:
            seen.add(chunk_id)
            unique.append((chunk_id, score))
    return unique


def limit_per_page(ranked: Ranked, page_of: Callable[[int], str], per_page: int, k: int) -> Ranked:
    """The best `k` hits with at most `per_page` from any one page (0: no limit).

    Near-duplicate chunks of one page crowd out other pages that may hold the answer;
    a page that matters is still represented by its best chunk.
    """
    taken: Counter[str] = Counter()
    kept = []
    for chunk_id, score in ranked:
        if len(kept) == k:
            break
        page = page_of(chunk_id)
        if per_page and taken[page] >= per_page:
            continue
        taken[page] += 1
        kept.append((chunk_id, score))
    return kept
