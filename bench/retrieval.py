"""retrieval_score of an eval set against indexes of the Ray docs, beside the reference's figures.

    python bench/retrieval.py [--eval FILE] [--index NAME] [--corpus DIR] [--json]

retrieval_score = share of questions whose gold page (URL before `#`) is the page of
any retrieved chunk. Scored on every question and on the "in-corpus" ones, whose gold
page the index holds. Without --index, indexes at chunk sizes 300 and 700 are built
from the corpus when missing (minutes each on a CPU); with --index, that one only.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from common import EVAL_SET, RAY_DOCS, RAY_DOCS_CONFIG, RAY_DOCS_URL, emit_json, index_pages, require_path

from docent.settings import Settings, load_settings
from docent.types import LexicalBackend
from evaluation.retrieval import load_eval_set, retrieval_hit
from ingest.pipeline import run_ingest
from services.retriever.retriever import load_lexical_index
from services.retriever.search import LocalSearch

# From ../shared/README.md (gte-base/gte-large on a GPU, HTML crawl, all 177 questions).
# The reference returned near-duplicate chunks freely: compare with the "no page limit" rows.
REFERENCE = {
    ("semantic, no page limit", 5, 300): "0.525 (gte-base)",
    ("semantic, no page limit", 5, 700): "0.520 (gte-base)",
    ("semantic, no page limit", 13, 700): "0.757 (gte-base)",
    ("reference fusion, 13 + 5 BM25, no page limit", 13, 700): "0.802 (gte-large)",
}


@dataclass(frozen=True)
class Variant:
    label: str
    mode: str
    k: int
    lexical_k: int = 0
    fusion: str = "rrf"
    per_page: int = 1
    lexical_backend: str = "bm25s"


VARIANTS = [
    Variant("semantic", "semantic", 5),
    Variant("semantic", "semantic", 13),
    Variant("lexical", "lexical", 5),
    Variant("lexical", "lexical", 13),
    Variant("lexical (rank-bm25)", "lexical", 13, lexical_backend="rank-bm25"),
    Variant("hybrid", "hybrid", 5, lexical_k=5),
    Variant("hybrid", "hybrid", 13, lexical_k=5),
    Variant("hybrid (rank-bm25)", "hybrid", 13, lexical_k=5, lexical_backend="rank-bm25"),
    # the naive pipelines the issue compares against: no page limit, the reference's fusion
    Variant("semantic, no page limit", "semantic", 5, per_page=0),
    Variant("semantic, no page limit", "semantic", 13, per_page=0),
    Variant("reference fusion, 13 + 5 BM25, no page limit", "hybrid", 13, lexical_k=5, fusion="reference", per_page=0),
]


async def _score(settings: Settings, questions, pages: set[str]) -> list[dict]:
    local = await LocalSearch.open(settings)
    lexical_indexes = {"bm25s": local.retriever.lexical}
    results = []
    try:
        for variant in VARIANTS:
            if variant.lexical_backend not in lexical_indexes:
                backend = settings.lexical.model_copy(update={"backend": LexicalBackend(variant.lexical_backend)})
                lexical_indexes[variant.lexical_backend] = await load_lexical_index(local.pool, local.index, backend)
            local.retriever.lexical = lexical_indexes[variant.lexical_backend]
            local.retriever.settings = settings.retrieval.model_copy(
                update={"fusion": variant.fusion, "max_chunks_per_page": variant.per_page}
            )
            hits = []
            started = time.perf_counter()
            for q in questions:
                found = await local.search(q.question, mode=variant.mode, k=variant.k, lexical_k=variant.lexical_k)
                hits.append(retrieval_hit(q.source, [h.source for h in found]))
            in_corpus = [hit for hit, q in zip(hits, questions) if q.page in pages]
            results.append(
                {
                    "mode": variant.label,
                    "k": variant.k,
                    "returned": variant.k + (variant.lexical_k if variant.fusion == "reference" else 0),
                    "chunk_size": local.index.config.chunk_size,
                    "all": round(sum(hits) / len(hits), 3),
                    "in_corpus": round(sum(in_corpus) / len(in_corpus), 3) if in_corpus else None,
                    "n_in_corpus": len(in_corpus),
                    "ms_per_query": round(1000 * (time.perf_counter() - started) / len(questions), 1),
                }
            )
    finally:
        await local.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--eval", type=Path, default=EVAL_SET)
    parser.add_argument("--index", help="score this existing index only")
    parser.add_argument("--corpus", type=Path, default=RAY_DOCS)
    parser.add_argument("--base-url", default=RAY_DOCS_URL)
    parser.add_argument("--config", default=str(RAY_DOCS_CONFIG))
    parser.add_argument("--json", action="store_true", help="print one JSON object of the figures last")
    args = parser.parse_args()
    questions = load_eval_set(require_path(args.eval, "eval set"))

    if args.index:
        configurations = [load_settings(args.config, index=args.index)]
    else:
        configurations = [
            load_settings(args.config, index=f"bench-ray-{size}", chunking={"chunk_size": size}) for size in (300, 700)
        ]
    results = []
    for settings in configurations:
        pages = asyncio.run(index_pages(settings))
        if pages is None:
            if args.index:
                raise SystemExit(f"no index named {args.index!r}")
            print(f"building index {settings.index_name} from {args.corpus} …", flush=True)
            run_ingest(require_path(args.corpus, "corpus"), settings, base_url=args.base_url)
            pages = asyncio.run(index_pages(settings))
        results.extend(asyncio.run(_score(settings, questions, pages)))

    print(f"{len(questions)} questions from {args.eval}")
    header = f"{'mode':<46} {'k':>3} {'chunks':>6} {'size':>5} {'all':>6} {'in-corpus':>9} {'ms/q':>6}  reference (all)"
    print(header)
    for r in results:
        ref = REFERENCE.get((r["mode"], r["k"], r["chunk_size"]))
        print(
            f"{r['mode']:<46} {r['k']:>3} {r['returned']:>6} {r['chunk_size']:>5} {r['all']:>6.3f} "
            f"{r['in_corpus'] if r['in_corpus'] is not None else float('nan'):>9.3f} {r['ms_per_query']:>6}  {ref or ''}"
        )
    print("target: default configuration (hybrid, k=13) in-corpus >= 0.85")
    if args.json:
        emit_json({"eval": str(args.eval), "questions": len(questions), "results": results})


if __name__ == "__main__":
    main()
