"""The offline answer: token F1 against reference answers, and whether its first citation is the gold page.

    python bench/answers.py [--index NAME] [--eval FILE] [--references FILE] [--show N] [--json]

Every question of the eval set is answered in-process without an LLM (`llm: extractive`,
abstention off, so every question gets a passage). Token F1 (citations removed) is against
`references-gpt-4-turbo.json`, over all questions and the in-corpus ones; "first citation
on the gold page" is over the in-corpus ones. --show prints the first N answers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
from pathlib import Path

from common import EVAL_SET, SHARED, emit_json, ray_docs_index, require_path

from docent.types import EXTRACTIVE_LLM, QueryOptions, QueryRequest, page_of
from evaluation.metrics import token_f1
from evaluation.retrieval import load_eval_set

REFERENCES = SHARED / "datasets" / "references-gpt-4-turbo.json"
_FIRST_CITATION = re.compile(r"\[(\d+)\]")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", default="bench-ray-300")
    parser.add_argument("--eval", default=str(EVAL_SET))
    parser.add_argument("--references", default=str(REFERENCES))
    parser.add_argument("--show", type=int, default=0, help="print the first N answers")
    parser.add_argument("--json", action="store_true")
    return parser.parse_args()


async def main() -> None:
    from services.gateway.local import close_local_pipeline, open_local_pipeline

    args = parse_args()
    settings, pages = await ray_docs_index(args.index)
    questions = load_eval_set(require_path(Path(args.eval), "eval set"))
    references = {r["question"]: r["answer"] for r in json.loads(require_path(Path(args.references), "references").read_text())}
    pipeline = await open_local_pipeline(settings)
    rows = []
    try:
        for q in questions:
            answer = await pipeline.answer(QueryRequest(query=q.question, options=QueryOptions(llm=EXTRACTIVE_LLM, abstain=False)))
            first = _FIRST_CITATION.search(answer.answer)
            cited_page = page_of(answer.sources[int(first.group(1)) - 1].source) if first else None
            rows.append({
                "question": q.question, "answer": answer.answer, "in_corpus": page_of(q.source) in pages,
                "f1": token_f1(answer.answer, references.get(q.question, "")), "gold_first": cited_page == page_of(q.source),
                "code": "```" in answer.answer, "passages": len(set(_FIRST_CITATION.findall(answer.answer))),
                "generate_ms": answer.timings_ms.get("generate", 0.0),
            })
    finally:
        await close_local_pipeline(pipeline)
    inside = [r for r in rows if r["in_corpus"]]
    figures = {
        "questions": len(rows), "in_corpus": len(inside),
        "token_f1_all": round(statistics.mean(r["f1"] for r in rows), 3),
        "token_f1_in_corpus": round(statistics.mean(r["f1"] for r in inside), 3),
        "first_citation_gold_in_corpus": round(statistics.mean(r["gold_first"] for r in inside), 3),
        "answers_with_code": round(statistics.mean(r["code"] for r in rows), 3),
        "mean_sources_cited": round(statistics.mean(r["passages"] for r in rows), 2),
        "generate_ms_p50": round(statistics.median(r["generate_ms"] for r in rows), 2),
    }
    for row in rows[: args.show]:
        print(f"### {row['question']}\n{row['answer']}\n")
    for name, value in figures.items():
        print(f"{name}: {value}")
    if args.json:
        emit_json(figures)


if __name__ == "__main__":
    asyncio.run(main())
