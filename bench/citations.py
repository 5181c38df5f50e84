"""Checked citations: precision and recall at catching wrong ones, and the cost per answer.

    python bench/citations.py [--index NAME] [--eval FILE] [--references FILE] [--json]

A labelled set is built from real answers:

- docent's offline answers (the claims they cite, each with the source it cites): correct;
  the same claims with the source number swapped for another retrieved page's: wrong;
  the same claims cited to a page retrieved for another question: wrong;
- answers written by an LLM (gpt-4-turbo's reference answers), each sentence cited to the
  gold section the LLM wrote it from: correct (noisy: an LLM adds what its source doesn't
  say); the same sentences cited to another retrieved page: wrong.

The threshold is chosen on offline answers to questions of `embedding_qa.json` and on the
LLM answers of one half of the eval questions; it is reported on the offline answers to the
eval questions and on the LLM answers of the other half.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from common import EVAL_SET, SHARED, emit_json, ray_docs_index, require_path

from docent.citations import CitationChecker, claims
from docent.db import connect
from docent.store import IndexStore
from docent.types import EXTRACTIVE_LLM, QueryOptions, QueryRequest, page_of
from evaluation.calibration import read_scope_questions, sample, split_half

EMBEDDING_QA = SHARED / "datasets" / "embedding_qa.json"
REFERENCES = SHARED / "datasets" / "references-gpt-4-turbo.json"
DEV_QUESTIONS = 200
THRESHOLDS = [round(0.01 * i, 2) for i in range(30, 96)]
_SENTENCE = __import__("re").compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Labelled:
    claim: str
    source_text: str
    wrong: bool
    kind: str  # offline-correct, offline-swapped, offline-other-question, llm-correct, llm-swapped


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", default="bench-ray-300")
    parser.add_argument("--eval", default=str(EVAL_SET))
    parser.add_argument("--references", default=str(REFERENCES))
    parser.add_argument("--json", action="store_true")
    return parser.parse_args()


async def answers(settings, questions: list[str]) -> list[tuple[str, list[str], list[str]]]:
    """(offline answer, its sources' texts, their pages) for each question, as the pipeline answers it."""
    from services.gateway.local import close_local_pipeline, open_local_pipeline

    pipeline = await open_local_pipeline(settings)
    try:
        found = []
        for question in questions:
            answer = await pipeline.answer(QueryRequest(query=question, options=QueryOptions(llm=EXTRACTIVE_LLM, abstain=False)))
            found.append((answer.answer, [s.text for s in answer.sources], [page_of(s.source) for s in answer.sources]))
        return found
    finally:
        await close_local_pipeline(pipeline)


def offline_labels(answered, rng: random.Random) -> list[Labelled]:
    labelled = []
    for position, (text, sources, pages) in enumerate(answered):
        for claim in claims(text):
            cited = claim.sources[0]
            if not 1 <= cited <= len(sources):
                continue
            labelled.append(Labelled(claim.text, sources[cited - 1], False, "offline-correct"))
            others = [i for i, page in enumerate(pages) if page != pages[cited - 1]]
            if others:
                labelled.append(Labelled(claim.text, sources[rng.choice(others)], True, "offline-swapped"))
            other_question = answered[(position + 1 + rng.randrange(len(answered) - 1)) % len(answered)]
            if other_question[1]:
                labelled.append(Labelled(claim.text, rng.choice(other_question[1]), True, "offline-other-question"))
    return labelled


def llm_labels(
    references: dict[str, str], gold_texts: dict[str, str], gold_sources: dict[str, str], answered: dict[str, tuple], rng: random.Random
) -> list[Labelled]:
    labelled = []
    for question, reference in references.items():
        gold = gold_texts.get(question)
        if not gold or question not in answered:
            continue
        _, sources, pages = answered[question]
        others = [text for text, page in zip(sources, pages) if page != page_of(gold_sources[question])]
        for sentence in _SENTENCE.split(reference.strip()):
            if len(sentence.split()) < 4:
                continue
            labelled.append(Labelled(sentence, gold, False, "llm-correct"))
            if others:
                labelled.append(Labelled(sentence, rng.choice(others), True, "llm-swapped"))
    return labelled


def scores(checker: CitationChecker, labelled: list[Labelled]) -> list[float]:
    return [checker.check(f"{item.claim} [1]", [item.source_text])[0].score if claims(f"{item.claim} [1]") else 1.0 for item in labelled]


def precision_recall(labelled: list[Labelled], found: list[float], threshold: float) -> tuple[float, float]:
    """Of the citations flagged unsupported, the share that are wrong; of the wrong ones, the share flagged."""
    flagged = [item.wrong for item, score in zip(labelled, found) if score < threshold]
    wrong = sum(item.wrong for item in labelled)
    precision = sum(flagged) / len(flagged) if flagged else 1.0
    recall = sum(flagged) / wrong if wrong else 1.0
    return round(precision, 3), round(recall, 3)


async def gold_sections(settings, references: dict[str, str], sources: dict[str, str]) -> dict[str, str]:
    conn = await connect(settings)
    try:
        store = IndexStore(conn)
        index = await store.require(settings.index_name)
        sections = await store.sections(index, list(set(sources.values())))
    finally:
        await conn.close()
    return {q: sections[sources[q]].text for q in references if sources.get(q) in sections}


async def main() -> None:
    args = parse_args()
    settings, pages = await ray_docs_index(args.index)
    rng = random.Random(0)
    dev = [q for q in sample(read_scope_questions(require_path(EMBEDDING_QA, "embedding_qa.json"), "set"), DEV_QUESTIONS * 2, 1)
           if q.source and page_of(q.source) in pages][:DEV_QUESTIONS]
    held = [q for q in read_scope_questions(require_path(Path(args.eval), "eval set"), "eval set") if q.source and page_of(q.source) in pages]
    references = {row["question"]: row["answer"] for row in json.loads(require_path(Path(args.references), "references").read_text())
                  if row.get("answer")}
    print(f"answering {len(dev) + len(held)} questions offline from {args.index} …")
    answered = await answers(settings, [q.question for q in dev + held])
    dev_answers, held_answers = answered[: len(dev)], answered[len(dev) :]

    sources = {q.question: q.source for q in held}
    gold = await gold_sections(settings, {q.question: references[q.question] for q in held if q.question in references}, sources)
    dev_set = offline_labels(dev_answers, rng)
    held_offline = offline_labels(held_answers, rng)
    by_question = dict(zip([q.question for q in held], held_answers))
    fit_llm = llm_labels({q: references[q] for q in gold if split_half(q) == 0}, gold, sources, by_question, rng)
    held_llm = llm_labels({q: references[q] for q in gold if split_half(q) == 1}, gold, sources, by_question, rng)

    from services.generator.extractive import load_extractive

    embedder = load_extractive(settings.embedding, settings.generation).embedder
    checker = CitationChecker(embedder, 0.0)
    fit_set = dev_set + fit_llm
    fit_scores = scores(checker, fit_set)
    chosen = max(THRESHOLDS, key=lambda t: _f1(*precision_recall(fit_set, fit_scores, t)))

    figures = {"threshold": chosen, "fit": dict(zip(("precision", "recall"), precision_recall(fit_set, fit_scores, chosen)))}
    print(f"\nthreshold chosen on {len(fit_set)} labelled citations ({len(dev_set)} offline, embedding_qa; "
          f"{len(fit_llm)} LLM, half of the eval questions): {chosen} (settings: generation.citation_threshold "
          f"{settings.generation.citation_threshold})")
    print("set | citations | wrong | precision | recall")
    for name, labelled in (("offline answers (eval questions)", held_offline), ("LLM answers (other half, gpt-4-turbo references)", held_llm)):
        found = scores(checker, labelled)
        precision, recall = precision_recall(labelled, found, chosen)
        figures[name] = {"citations": len(labelled), "wrong": sum(i.wrong for i in labelled), "precision": precision, "recall": recall}
        print(f"{name} | {len(labelled)} | {sum(i.wrong for i in labelled)} | {precision} | {recall}")

    offline = [_timed(checker, text, texts) for text, texts, _ in held_answers]
    # An LLM's answer: the reference's sentences, each citing the gold section as [1] among the retrieved sources.
    llm = [_timed(checker, " ".join(f"{s} [1]" for s in _SENTENCE.split(references[q].strip())), [gold[q], *by_question[q][1]])
           for q in gold]
    print()
    for name, timings in (("offline", offline), ("llm", llm)):
        figures[f"ms_per_{name}_answer_p50"] = round(statistics.median(timings), 2)
        figures[f"ms_per_{name}_answer_p95"] = round(sorted(timings)[int(0.95 * (len(timings) - 1))], 2)
        print(f"check per {name} answer: p50 {figures[f'ms_per_{name}_answer_p50']} ms, p95 {figures[f'ms_per_{name}_answer_p95']} ms")
    print("goal: precision and recall at catching wrong citations ≥ 0.9 each")
    if args.json:
        emit_json(figures)


def _timed(checker: CitationChecker, answer: str, sources: list[str]) -> float:
    started = time.perf_counter()
    checker.check(answer, sources)
    return (time.perf_counter() - started) * 1000


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


if __name__ == "__main__":
    asyncio.run(main())
