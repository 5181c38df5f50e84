"""Moving the predicted docs area's chunks first: the reference's tag reranking."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from docent.tags import OTHER, tag_of

Item = TypeVar("Item")


def rerank(items: Sequence[Item], sources: Sequence[str], tag: str, base_url: str, k: int) -> list[Item]:
    """Items from the predicted area first, order otherwise kept, cut to `k`; "other" only cuts."""
    if tag == OTHER:
        return list(items[:k])
    order = sorted(range(len(items)), key=lambda i: (tag_of(sources[i], base_url) != tag, i))
    return [items[i] for i in order[:k]]
