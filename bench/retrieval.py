"""retrieval_score on held-out questions (where settings are chosen) and on eval-dataset-v1 (reported).

    python bench/retrieval.py [--sets held-out user real eval] [--index NAME] [--sweep] [--finetuned] [--corpus DIR] [--json]

Question sets:
  held-out  the held-out tenth of embedding_qa.json (synthetic, one per section;
            `docent.datasets.held_out`): fine-tuning never sees them
  user      evaluation/datasets/user-questions.jsonl: questions written by hand the way
            users ask, each checked against the corpus
  real      evaluation/datasets/real-questions.jsonl: real users' questions (from
            routing-dataset-train.jsonl, none in eval), each labelled by hand with the page
            that answers it
  eval      eval-dataset-v1.jsonl: the figure compared with the reference's, never used to choose

retrieval_score = share of questions whose gold page (URL before `#`) is the page of any
retrieved chunk, on every question ("all") and on those whose gold page the index holds
("in-corpus"). Without --index, indexes of the Ray docs at chunk sizes 300 and 700 (and
the shipped configuration's, if another) are built from the corpus when missing, minutes
each on a CPU. The row of the shipped configuration (config/ray-docs.yaml, retrieval
defaults) carries "default": true in --json. --sweep adds the levers tried on the
default configuration (page limit, fusion constant, lexical and page weights, candidates, BM25).
--finetuned adds all-MiniLM-L6-v2 fine-tuned on embedding_qa.json without its held-out
tenth (3 epochs, batch 32, inputs cut at 128 tokens; ~30 min on 2 cores, kept under
<data_dir>/models/), embedding bench-ray-300's chunks again (`docent reembed`).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

from common import (
    EMBEDDING_QA,
    EVAL_SET,
    RAY_DOCS,
    RAY_DOCS_CONFIG,
    RAY_DOCS_URL,
    REAL_QUESTIONS,
    USER_QUESTIONS,
    emit_json,
    index_pages,
    require_path,
)

from docent.datasets import held_out
from docent.lexical import LexicalIndex
from docent.settings import RetrievalSettings, Settings, load_settings
from docent.store import IndexStore
from docent.types import LexicalBackend, page_of
from evaluation.retrieval import EvalQuestion, load_eval_set, retrieval_hit
from ingest.pipeline import run_ingest
from services.retriever.retriever import load_lexical_index
from services.retriever.search import LocalSearch

# From ../shared/README.md (gte-base/gte-large on a GPU, HTML crawl, all 177 questions of eval).
# The reference returned near-duplicate chunks freely: compare with the "no page limit" rows.
REFERENCE = {
    ("semantic, no page limit", 5, 300): "0.525 (gte-base)",
    ("semantic, no page limit", 5, 700): "0.520 (gte-base)",
    ("semantic, no page limit", 13, 700): "0.757 (gte-base)",
    ("reference fusion, 13 + 5 BM25, no page limit", 13, 700): "0.802 (gte-large)",
}
SET_NAMES = ("held-out", "user", "real", "eval")
CHOOSING_SETS = ("held-out", "user", "real")
FINETUNED_MODEL = "minilm-ray-docs-ft"  # under <data_dir>/models/
FINETUNE = {"epochs": 3, "batch_size": 32, "validation_fraction": 0.05}
FINETUNE_MAX_TOKENS = 128  # sections cut there while training: 2.5x faster, and longer than any 300-char chunk
CHUNK_SIZES = (300, 700)


@dataclass(frozen=True)
class Variant:
    label: str
    mode: str
    k: int
    lexical_k: int = 0
    lexical_backend: str = "bm25s"
    retrieval: dict = field(default_factory=dict)  # RetrievalSettings fields laid over the configuration's
    lexical: dict = field(default_factory=dict)  # LexicalSettings fields: a BM25 index built for the variant

    def settings(self, base: RetrievalSettings) -> RetrievalSettings:
        return base.model_copy(update=self.retrieval)

    def is_default(self, shipped: Settings) -> bool:
        """The variant the shipped settings retrieve with."""
        retrieval = shipped.retrieval
        return (
            self.mode == retrieval.mode and self.k == retrieval.num_chunks
            and self.lexical_backend == shipped.lexical.backend and self.settings(retrieval) == retrieval
            and shipped.lexical.model_copy(update=self.lexical) == shipped.lexical
        )


VARIANTS = [
    Variant("semantic", "semantic", 5),
    Variant("semantic", "semantic", 13),
    Variant("lexical", "lexical", 5),
    Variant("lexical", "lexical", 13),
    Variant("lexical (rank-bm25)", "lexical", 13, lexical_backend="rank-bm25"),
    Variant("hybrid", "hybrid", 5, lexical_k=5),
    Variant("hybrid", "hybrid", 13, lexical_k=5),
    Variant("hybrid (rank-bm25)", "hybrid", 13, lexical_k=5, lexical_backend="rank-bm25"),
    # the naive pipelines the reference measured: no page limit, its fusion
    Variant("semantic, no page limit", "semantic", 5, retrieval={"max_chunks_per_page": 0}),
    Variant("semantic, no page limit", "semantic", 13, retrieval={"max_chunks_per_page": 0}),
    Variant("reference fusion, 13 + 5 BM25, no page limit", "hybrid", 13, lexical_k=5,
            retrieval={"fusion": "reference", "max_chunks_per_page": 0}),
]
SWEEP = [
    Variant("hybrid, 2 chunks per page", "hybrid", 13, 5, retrieval={"max_chunks_per_page": 2}),
    Variant("hybrid, no page limit", "hybrid", 13, 5, retrieval={"max_chunks_per_page": 0}),
    Variant("hybrid, rrf k 20", "hybrid", 13, 5, retrieval={"rrf_k": 20}),
    Variant("hybrid, rrf k 120", "hybrid", 13, 5, retrieval={"rrf_k": 120}),
    Variant("hybrid, lexical weight 0.7", "hybrid", 13, 5, retrieval={"lexical_weight": 0.7}),
    Variant("hybrid, lexical weight 1.3", "hybrid", 13, 5, retrieval={"lexical_weight": 1.3}),
    Variant("hybrid, page weight 0 (chunks alone)", "hybrid", 13, 5, retrieval={"page_weight": 0.0}),
    Variant("hybrid, page weight 0.25", "hybrid", 13, 5, retrieval={"page_weight": 0.25}),
    Variant("hybrid, page weight 1", "hybrid", 13, 5, retrieval={"page_weight": 1.0}),
    Variant("hybrid, 100 candidates", "hybrid", 13, 5, retrieval={"candidates": 100}),
    Variant("hybrid, identifiers whole in BM25", "hybrid", 13, 5, lexical={"identifiers": True}),
    Variant("hybrid, BM25 k1 1.2 b 0.75", "hybrid", 13, 5, lexical={"k1": 1.2}),
    Variant("hybrid, BM25 k1 1.5 b 0.5", "hybrid", 13, 5, lexical={"b": 0.5}),
    Variant("hybrid, BM25 k1 1.5 b 0.9", "hybrid", 13, 5, lexical={"b": 0.9}),
    Variant("hybrid", "hybrid", 8, 5),
    Variant("hybrid", "hybrid", 10, 5),
]


def question_sets(names: list[str], user_set: Path) -> dict[str, list[EvalQuestion]]:
    sets = {}
    for name in names:
        if name == "eval":
            sets[name] = load_eval_set(require_path(EVAL_SET, "eval set"))
        elif name == "held-out":
            sets[name] = [q for q in load_eval_set(require_path(EMBEDDING_QA, "embedding_qa.json")) if held_out(q.question)]
        elif name == "real":
            sets[name] = load_eval_set(require_path(REAL_QUESTIONS, "real question set"))
        else:
            sets[name] = load_eval_set(require_path(user_set, "user question set"))
    return sets


async def _lexical_index(local: LocalSearch, lexical, built: bool):
    """The index's BM25 for these settings: loaded as stored, or built now when they differ from the stored one's."""
    if not built:
        return await load_lexical_index(local.pool, local.index, lexical)
    async with local.pool.acquire() as conn:
        ids, chunks = await IndexStore(conn).chunk_texts(local.index)
    texts = [c.embedding_text if local.index.config.include_titles else c.text for c in chunks]
    return LexicalIndex.build(ids, texts, lexical)


def _first_rank(page: str, pages: list[str]) -> int | None:
    return pages.index(page) + 1 if page in pages else None


def _is_shipped_index(config, shipped: Settings) -> bool:
    chunking = shipped.chunking
    return (config.chunk_size, config.chunk_overlap, config.chunk_unit, config.include_titles, config.embedding_model) == (
        chunking.chunk_size, chunking.chunk_overlap, chunking.unit, chunking.include_titles, shipped.embedding.model)


async def score_index(settings: Settings, shipped: Settings, sweep: bool, sets, pages: set[str]) -> list[dict]:
    local = await LocalSearch.open(settings)
    is_shipped = _is_shipped_index(local.index.config, shipped)
    variants = VARIANTS + (SWEEP if sweep and is_shipped else [])
    lexical_indexes = {("bm25s", ()): local.retriever.lexical}
    vectors = {name: local.embed_queries([q.question for q in questions]) for name, questions in sets.items()}
    results = []
    try:
        for variant in variants:
            key = (variant.lexical_backend, tuple(sorted(variant.lexical.items())))
            if key not in lexical_indexes:
                lexical = settings.lexical.model_copy(update={"backend": LexicalBackend(variant.lexical_backend), **variant.lexical})
                lexical_indexes[key] = await _lexical_index(local, lexical, built=bool(variant.lexical))
            local.retriever.lexical = lexical_indexes[key]
            local.retriever.settings = variant.settings(settings.retrieval)
            row = {
                "mode": variant.label,
                "k": variant.k,
                "returned": variant.k + (variant.lexical_k if local.retriever.settings.fusion == "reference" else 0),
                "chunk_size": local.index.config.chunk_size,
                "model": local.index.config.embedding_model,
                "index": local.index.config.name,
                "default": is_shipped and variant.is_default(shipped),
            }
            started, asked = time.perf_counter(), 0
            for name, questions in sets.items():
                hits, ranks = [], []
                for question, vector in zip(questions, vectors[name], strict=True):
                    found = await local.search(question.question, mode=variant.mode, k=variant.k,
                                               lexical_k=variant.lexical_k, vector=vector)
                    hits.append(retrieval_hit(question.source, [h.source for h in found]))
                    ranks.append(_first_rank(question.page, [page_of(h.source) for h in found]))
                in_corpus = [i for i, q in enumerate(questions) if q.page in pages]
                row[name] = {
                    "all": round(sum(hits) / len(hits), 3),
                    "in_corpus": round(sum(hits[i] for i in in_corpus) / len(in_corpus), 3) if in_corpus else None,
                    # mean reciprocal rank of the gold page, in-corpus: it moves when the order does, at any k
                    "mrr": round(sum(1 / ranks[i] for i in in_corpus if ranks[i]) / len(in_corpus), 3) if in_corpus else None,
                    "n": len(hits),
                    "n_in_corpus": len(in_corpus),
                }
                asked += len(questions)
            row["ms_per_query"] = round(1000 * (time.perf_counter() - started) / max(asked, 1), 1)
            results.append(row)
    finally:
        await local.close()
    return results


def _configurations(args, shipped: Settings) -> list[Settings]:
    """The settings of each index to score."""
    if args.index:
        return [load_settings(args.config, index=args.index)]
    sizes = sorted({*CHUNK_SIZES, shipped.chunking.chunk_size})
    return [load_settings(args.config, index=f"bench-ray-{size}", chunking={"chunk_size": size}) for size in sizes]


def _finetuned_index(base: Settings, args) -> Settings:
    """bench-ray-300's chunks embedded with the fine-tuned model, both built when missing."""
    from ingest.reembed import run_reembed
    from training.embeddings import finetune_embeddings, load_training_pairs

    model_dir = base.data_dir.expanduser() / "models" / FINETUNED_MODEL
    settings = load_settings(args.config, index=f"{base.index_name}-ft", embedding={"model": str(model_dir)})
    if asyncio.run(index_pages(settings)) is not None:
        return settings
    if not (model_dir / "docent-finetune.json").is_file():
        print(f"fine-tuning {base.embedding.model} into {model_dir} (about half an hour on 2 cores) …", flush=True)
        trainer = load_settings(args.config, index=base.index_name, finetune=FINETUNE,
                                embedding={"max_seq_length": FINETUNE_MAX_TOKENS})
        pairs = asyncio.run(load_training_pairs(trainer, EMBEDDING_QA, base.index_name, skip_held_out=True))
        finetune_embeddings(trainer, pairs, model_dir, overwrite=True)
    print(f"embedding {base.index_name}'s chunks with it into {settings.index_name} …", flush=True)
    run_reembed(base.index_name, settings)
    return settings


def _print(results: list[dict], sets: dict[str, list[EvalQuestion]]) -> None:
    columns = "".join(f"{name + ' all':>13}{name + ' in':>12}{name + ' mrr':>13}" for name in sets)
    print(f"{'mode':<46} {'model':<20} {'k':>3} {'chunks':>6} {'size':>5}{columns} {'ms/q':>6}  reference (eval, all)")
    for r in results:
        ref = REFERENCE.get((r["mode"], r["k"], r["chunk_size"])) if "eval" in sets else None
        cells = "".join(f"{r[name]['all']:>13.3f}{r[name]['in_corpus'] or float('nan'):>12.3f}"
                        f"{r[name]['mrr'] or float('nan'):>13.3f}" for name in sets)
        mark = " *" if r["default"] else ""
        print(f"{r['mode'] + mark:<46} {Path(r['model']).name[:20]:<20} {r['k']:>3} {r['returned']:>6} {r['chunk_size']:>5}{cells} {r['ms_per_query']:>6}  {ref or ''}")
    print(f"* the shipped configuration. Choose on {', '.join(CHOOSING_SETS)}; eval is reported beside the reference, never chosen by.")
    print("targets: default in-corpus >= 0.85 on held-out and real questions, eval in-corpus >= 0.876")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", choices=SET_NAMES, default=list(SET_NAMES))
    parser.add_argument("--user-set", type=Path, default=USER_QUESTIONS, help="the hand-written question set")
    parser.add_argument("--index", help="score this existing index only")
    parser.add_argument("--sweep", action="store_true", help="also the levers tried on the default configuration")
    parser.add_argument("--finetuned", action="store_true", help="also the fine-tuned model (built when missing)")
    parser.add_argument("--corpus", type=Path, default=RAY_DOCS)
    parser.add_argument("--base-url", default=RAY_DOCS_URL)
    parser.add_argument("--config", default=str(RAY_DOCS_CONFIG))
    parser.add_argument("--json", action="store_true", help="print one JSON object of the figures last")
    args = parser.parse_args()
    if args.finetuned and args.index:
        parser.error("--finetuned starts from bench-ray-300: leave out --index")
    sets = question_sets(args.sets, args.user_set)
    shipped = load_settings(args.config)

    results = []
    configurations = _configurations(args, shipped)
    for settings in configurations:
        pages = asyncio.run(index_pages(settings))
        if pages is None:
            if args.index:
                raise SystemExit(f"no index named {args.index!r}")
            print(f"building index {settings.index_name} from {args.corpus} …", flush=True)
            run_ingest(require_path(args.corpus, "corpus"), settings, base_url=args.base_url)
            pages = asyncio.run(index_pages(settings))
        results.extend(asyncio.run(score_index(settings, shipped, args.sweep, sets, pages)))
    if args.finetuned:
        base = next(s for s in configurations if s.chunking.chunk_size == CHUNK_SIZES[0])
        settings = _finetuned_index(base, args)
        results.extend(asyncio.run(score_index(settings, shipped, False, sets, asyncio.run(index_pages(settings)))))

    print(", ".join(f"{name}: {len(questions)} questions" for name, questions in sets.items()))
    _print(results, sets)
    if args.json:
        emit_json({"sets": {name: len(q) for name, q in sets.items()}, "results": results})


if __name__ == "__main__":
    main()
