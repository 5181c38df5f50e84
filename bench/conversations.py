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

from common import EVAL_SET, ROOT, SHARED, emit_json, ray_docs_index, require_path

from docent.conversation import (
    MAX_OWN_WORDS_REFERRING,
    MIN_OWN_WORDS,
    NAMED_SUBJECT,
    REFERRING,
    condense_offline,
    own_words,
    words,
)
from docent.types import QueryRequest, Role, Turn, page_of
from evaluation.calibration import read_scope_questions, sample, split_half
from evaluation.retrieval import load_eval_set, retrieval_hit
from services.gateway.conversation import OFFLINE, Condensed, Condenser
from services.gateway.local import close_local_pipeline, open_local_pipeline
from services.gateway.pipeline import QueryPipeline

FOLLOW_UPS = ROOT / "evaluation" / "datasets" / "follow-ups.jsonl"
EMBEDDING_QA = SHARED / "datasets" / "embedding_qa.json"
STANDALONE_SAMPLE = 300  # embedding_qa questions that choose, beside the follow-ups' choose half
GOAL_GAP = 0.05
HALVES = {0: "choose", 1: "held-out"}
UNFUSED = "bench"  # a condenser name the gateway does not fuse


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


def _few_own_words(question: str, turns: Sequence[Turn]) -> str:
    """The first gate: a referring word counted only in a question of at most 4 words of its own."""
    said = words(question)
    own = len(own_words(question))
    continuing = any(" ".join(said).startswith(o) for o in ("and ", "but ", "also ", "so ", "or ", "what about ", "how about "))
    referring = own <= MAX_OWN_WORDS_REFERRING and any(w in REFERRING for w in said)
    if turns and (continuing or referring or (own < MIN_OWN_WORDS and not NAMED_SUBJECT.search(question))):
        return f"{question} (about: {turns[-1].content})"
    return question


def _always(question: str, turns: Sequence[Turn]) -> str:
    return f"{question} (about: {turns[-1].content})" if turns else question


# Offline ways of condensing, each searched for alone or fused (the standalone question's
# hits and the question's own taken in turn, as the gateway does offline); compared on the
# choose half and on standalone embedding_qa questions after an unrelated turn.
SHIPPED = "a referring word anywhere; fused (shipped)"
OFFLINE_WAYS: dict[str, tuple[Callable[[str, Sequence[Turn]], str], bool]] = {
    SHIPPED: (condense_offline, True),
    "a referring word anywhere": (condense_offline, False),
    "a referring word in a question of ≤ 4 own words (the first gate)": (_few_own_words, False),
    "a referring word in a question of ≤ 4 own words; fused": (_few_own_words, True),
    "always": (_always, False),
    "always; fused": (_always, True),
}


async def hits(pipeline: QueryPipeline, question: str, standalone: str, gold: str, fuse: bool = False) -> bool:
    """Whether the gold page is retrieved for `standalone`; with `fuse`, as the gateway retrieves an offline
    standalone question: its hits and the question's own taken in turn."""
    condensed = Condensed(question, standalone, OFFLINE if fuse else UNFUSED)
    prepared = await pipeline.prepare(QueryRequest(query=question), condensed)
    return retrieval_hit(gold, [h.source for h in prepared.hits])


async def score(pipeline: QueryPipeline, asked: Sequence[tuple[str, str, str]], fuse: bool = False) -> list[bool]:
    """(question, standalone, gold) → hit per question."""
    return [await hits(pipeline, q, s, g, fuse) for q, s, g in asked]


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
        qa = [q for q in sample(read_scope_questions(require_path(EMBEDDING_QA, "embedding_qa.json"), "embedding_qa"),
                                STANDALONE_SAMPLE, 0) if q.source and page_of(q.source) in pages]
        evals = [q for q in load_eval_set(require_path(args.eval, "eval set"))]
        qa_alone = await _after_a_turn(pipeline, qa, conversations, None)
        eval_alone = await _after_a_turn(pipeline, evals, conversations, None)
        standalone: dict[str, dict] = {"alone": {"embedding_qa": qa_alone, "eval": eval_alone}}
        for label, (way, fuse) in OFFLINE_WAYS.items():
            asked = [(c.follow_up, way(c.follow_up, c.turns), c.source) for c in conversations]
            rows[label] = shares(await score(pipeline, asked, fuse), halves)
            standalone[label] = {
                "embedding_qa": await _after_a_turn(pipeline, qa, conversations, way, fuse),
                "eval": await _after_a_turn(pipeline, evals, conversations, way, fuse),
            }
        rows.update(await _by_llm(settings, pipeline, conversations, halves))
    finally:
        await close_local_pipeline(pipeline)

    width = max(len(label) for label in rows)
    print(f"\n{'retrieval_score':<{width}}  {'all':>6} {'choose':>7} {'held-out':>8}")
    for label, figures in rows.items():
        print(f"{label:<{width}}  {figures['all']:>6.3f} {figures['choose']:>7.3f} {figures['held-out']:>8.3f}")
    first, shipped = rows["first questions alone"]["all"], rows[SHIPPED]["all"]
    print(f"\ngoal: follow-ups with history offline within {GOAL_GAP} of the first questions "
          f"({first:.3f}): {shipped:.3f}, gap {first - shipped:+.3f}")
    print(f"\nstandalone questions after an unrelated first turn: retrieval_score (questions condensed); "
          f"embedding_qa sample ({len(qa)}, chooses) | {args.eval.name} ({len(evals)}, reported only)")
    for label, figures in standalone.items():
        qa_f, eval_f = figures["embedding_qa"], figures["eval"]
        print(f"{label:<{width}}  {qa_f['score']:.3f} ({qa_f['condensed']:>3}) | {eval_f['score']:.3f} ({eval_f['condensed']:>3})")
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


async def _after_a_turn(pipeline, questions, conversations: Sequence[Conversation], way, fuse: bool = False) -> dict:
    """Standalone questions each after an unrelated first turn, condensed by `way` (None: asked alone)."""
    flags, condensed = [], 0
    for i, q in enumerate(questions):
        previous = conversations[i % len(conversations)].turns
        standalone = way(q.question, previous) if way else q.question
        condensed += standalone != q.question
        flags.append(await hits(pipeline, q.question, standalone, q.source, fuse))
    return {"score": round(sum(flags) / max(1, len(flags)), 3), "condensed": condensed}


if __name__ == "__main__":
    asyncio.run(main())
