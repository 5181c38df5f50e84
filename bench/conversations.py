"""Follow-up questions: retrieval_score asked alone, and read with their conversation.

    python bench/conversations.py [--index NAME] [--set FILE] [--eval FILE] [--json]

The follow-up set (`evaluation/datasets/follow-ups.jsonl`, written by hand and checked
against the corpus) holds two-turn conversations whose follow-up only makes sense after
the first question, each with the page that answers either turn. Each follow-up is
retrieved as the served pipeline retrieves it: alone, then made to stand alone by each
offline way of condensing below, and by the configured LLM when there is one. The
offline way docent ships was chosen on the "choose" half (`split_half` of the follow-up)
and is reported on both; the goal is the first questions' own retrieval_score within 0.05.

Standalone questions must not lose: the eval set's questions are scored alone and after
an unrelated first turn (a first question of the follow-up set), condensed as served.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from common import EVAL_SET, ROOT, emit_json, ray_docs_index, require_path, retrieval_hit

from docent.conversation import condense_offline, own_words, refers_back
from docent.types import QueryRequest, Role, Turn, page_of
from evaluation.calibration import split_half
from evaluation.retrieval import load_eval_set
from services.gateway.conversation import OFFLINE, Condensed, Condenser
from services.gateway.local import close_local_pipeline, open_local_pipeline
from services.gateway.pipeline import QueryPipeline

FOLLOW_UPS = ROOT / "evaluation" / "datasets" / "follow-ups.jsonl"
GOAL_GAP = 0.05
HALVES = {0: "choose", 1: "held-out"}


@dataclass(frozen=True)
class Conversation:
    first: str
    first_source: str
    follow_up: str
    source: str
    kind: str

    @property
    def turns(self) -> list[Turn]:
        return [Turn(role=Role.USER, content=self.first)]


def read_follow_ups(path: Path) -> list[Conversation]:
    rows = [json.loads(line) for line in require_path(path, "follow-up set").read_text().splitlines() if line.strip()]
    return [Conversation(r["first"], r["first_source"], r["follow_up"], r["source"], r["kind"]) for r in rows]


def _subject_words(question: str, turns: Sequence[Turn]) -> str:
    subject = " ".join(own_words(turns[-1].content)) if turns else ""
    return f"{question} ({subject})" if subject and refers_back(question) else question


def _always(question: str, turns: Sequence[Turn]) -> str:
    return f"{question} (about: {turns[-1].content})" if turns else question


# Offline ways of condensing compared on the choose half; docent ships `condense_offline`.
OFFLINE_WAYS: dict[str, Callable[[str, Sequence[Turn]], str]] = {
    "offline: the subject question, when it refers back (shipped)": condense_offline,
    "offline: the subject question's own words, when it refers back": _subject_words,
    "offline: the subject question, always": _always,
}


async def hits(pipeline: QueryPipeline, question: str, standalone: str, gold: str) -> bool:
    condensed = Condensed(question, standalone, OFFLINE)
    prepared = await pipeline.prepare(QueryRequest(query=question), condensed)
    return retrieval_hit(gold, [h.source for h in prepared.hits])


async def score(pipeline: QueryPipeline, asked: Sequence[tuple[str, str, str]]) -> list[bool]:
    """(question, standalone, gold) → hit per question."""
    return [await hits(pipeline, q, s, g) for q, s, g in asked]


def shares(flags: Sequence[bool], halves: Sequence[int]) -> dict[str, float]:
    """The share of hits overall and in each half."""
    result = {"all": round(sum(flags) / max(1, len(flags)), 3)}
    for half, name in HALVES.items():
        picked = [f for f, h in zip(flags, halves) if h == half]
        result[name] = round(sum(picked) / max(1, len(picked)), 3)
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", default="bench-ray-300", help="an index of the Ray docs (bench/retrieval.py builds one)")
    parser.add_argument("--set", type=Path, default=FOLLOW_UPS, help="the follow-up set")
    parser.add_argument("--eval", type=Path, default=EVAL_SET, help="standalone questions: {question, source} rows")
    parser.add_argument("--json", action="store_true", help="print one JSON object of the figures last")
    args = parser.parse_args()

    settings, pages = await ray_docs_index(args.index)
    conversations = [c for c in read_follow_ups(args.set) if page_of(c.source) in pages and page_of(c.first_source) in pages]
    halves = [split_half(c.follow_up) for c in conversations]
    pipeline = await open_local_pipeline(settings)
    rows: dict[str, dict[str, float]] = {}
    try:
        print(f"{len(conversations)} conversations from {args.set.name}, index {args.index}")
        rows["first questions alone"] = shares(
            await score(pipeline, [(c.first, c.first, c.first_source) for c in conversations]), halves
        )
        rows["follow-ups alone"] = shares(
            await score(pipeline, [(c.follow_up, c.follow_up, c.source) for c in conversations]), halves
        )
        for label, way in OFFLINE_WAYS.items():
            asked = [(c.follow_up, way(c.follow_up, c.turns), c.source) for c in conversations]
            rows[label] = shares(await score(pipeline, asked), halves)
        rows.update(await _by_llm(settings, pipeline, conversations, halves))
        standalone = await _standalone(pipeline, args.eval, conversations)
    finally:
        await close_local_pipeline(pipeline)

    width = max(len(label) for label in rows)
    print(f"\n{'retrieval_score':<{width}}  {'all':>6} {'choose':>7} {'held-out':>8}")
    for label, figures in rows.items():
        print(f"{label:<{width}}  {figures['all']:>6.3f} {figures['choose']:>7.3f} {figures['held-out']:>8.3f}")
    first, shipped = rows["first questions alone"]["all"], rows[next(iter(OFFLINE_WAYS))]["all"]
    print(f"\ngoal: follow-ups with history offline within {GOAL_GAP} of the first questions "
          f"({first:.3f}): {shipped:.3f}, gap {first - shipped:+.3f}")
    print(f"\nstandalone ({args.eval.name}, {standalone['questions']} questions): alone {standalone['alone']:.3f}; "
          f"after an unrelated first turn {standalone['after_a_turn']:.3f} "
          f"({standalone['condensed']} questions condensed offline)")
    if args.json:
        emit_json({"index": args.index, "conversations": len(conversations), "rows": rows, "standalone": standalone})


async def _by_llm(settings, pipeline, conversations, halves) -> dict[str, dict[str, float]]:
    """The configured condensing LLM's figures; none without an LLM (say so)."""
    condenser = Condenser(settings)
    if condenser.llm is None:
        print("no LLM configured: the LLM condenser is not measured (configure generation.llms to measure it)")
        return {}
    flags = []
    try:
        for c in conversations:
            condensed = await condenser.condense(c.follow_up, c.turns)
            flags.append(await hits(pipeline, c.follow_up, condensed.standalone, c.source))
    finally:
        await condenser.aclose()
    return {f"LLM condenser ({condenser.llm_settings.name})": shares(flags, halves)}


async def _standalone(pipeline, eval_path: Path, conversations: Sequence[Conversation]) -> dict:
    """The eval set alone, and after an unrelated first turn as served (offline condensing)."""
    questions = load_eval_set(require_path(eval_path, "eval set"))
    alone = await score(pipeline, [(q.question, q.question, q.source) for q in questions])
    after, condensed = [], 0
    for i, q in enumerate(questions):
        previous = conversations[i % len(conversations)].turns
        standalone = condense_offline(q.question, previous)
        condensed += standalone != q.question
        after.append(await hits(pipeline, q.question, standalone, q.source))
    n = max(1, len(questions))
    return {"questions": len(questions), "alone": round(sum(alone) / n, 3),
            "after_a_turn": round(sum(after) / n, 3), "condensed": condensed}


if __name__ == "__main__":
    asyncio.run(main())
