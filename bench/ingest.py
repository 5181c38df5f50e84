"""Ingest throughput against bare PyTorch sentence-transformers, and the cost of an unchanged re-ingest.

    python bench/ingest.py [--corpus DIR] [--index NAME] [--no-retrieval] [--json]

Ingests the corpus into a fresh index (embedding.ingest_backend, as shipped), re-ingests
it unchanged, then embeds the very same chunk texts with bare sentence-transformers on
PyTorch (same model, same batch size): the baseline. The same texts also go through each
ONNX backend bare, so the model's share of the speed-up is apart from the pipeline's.
Unless --no-retrieval, the index is re-embedded with PyTorch (`docent reembed`, same
chunks) and both are scored on the held-out questions and eval-v1, so that the backend's
effect on retrieval_score is measured alone. Targets: end-to-end ≥ 2 × bare PyTorch;
retrieval within 0.01; unchanged re-ingest ≤ 10 % of the first run.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from common import RAY_DOCS, RAY_DOCS_CONFIG, RAY_DOCS_URL, emit_json, index_pages, require_path
from retrieval import question_sets, score_index

from docent.db import connect
from docent.embedding.onnx import load_backend_embedder
from docent.settings import Settings, load_settings
from docent.store import IndexStore
from docent.types import EmbeddingBackend
from ingest.pipeline import run_ingest
from ingest.reembed import run_reembed


async def _drop(settings: Settings, *names: str) -> None:
    conn = await connect(settings)
    try:
        store = IndexStore(conn)
        for name in names:
            if await store.get(name):
                await store.drop(name)
    finally:
        await conn.close()


async def _chunk_texts(settings: Settings) -> list[str]:
    conn = await connect(settings)
    try:
        store = IndexStore(conn)
        index = await store.require(settings.index_name)
        _, chunks = await store.chunk_texts(index)
        return [c.embedding_text if index.config.include_titles else c.text for c in chunks]
    finally:
        await conn.close()


def _bare_chunks_per_second(settings: Settings, backend: EmbeddingBackend, texts: list[str]) -> float:
    embedder = load_backend_embedder(settings.embedding, backend, settings.onnx_dir)
    embedder.embed(texts[:64])  # warm-up, as the pipeline's actor is warm after its first block
    started = time.perf_counter()
    embedder.embed(texts)
    return len(texts) / (time.perf_counter() - started)


def _retrieval(settings: Settings, torch_index: str) -> dict:
    """held-out and eval in-corpus scores (hybrid, 13 chunks) of the index and of its PyTorch twin."""
    sets = question_sets(["held-out", "eval"], Path())
    scores = {}
    for name in (settings.index_name, torch_index):
        indexed = settings.model_copy(update={"index": name})
        pages = asyncio.run(index_pages(indexed))
        row = next(r for r in asyncio.run(score_index(indexed, indexed, False, sets, pages)) if r["default"])
        scores[name] = {set_name: row[set_name]["in_corpus"] for set_name in sets}
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=str, default=str(RAY_DOCS))
    parser.add_argument("--base-url", default=RAY_DOCS_URL)
    parser.add_argument("--index", default="bench-ingest")
    parser.add_argument("--config", default=str(RAY_DOCS_CONFIG))
    parser.add_argument("--no-retrieval", action="store_true", help="skip the PyTorch twin and the retrieval scores")
    parser.add_argument("--json", action="store_true", help="print one JSON object of the figures last")
    args = parser.parse_args()
    corpus = require_path(Path(args.corpus), "corpus")
    settings = load_settings(args.config, index=args.index)
    torch_index = f"{args.index}-torch"

    asyncio.run(_drop(settings, args.index, torch_index))
    first = run_ingest(corpus, settings, base_url=args.base_url)
    again = run_ingest(corpus, settings, base_url=args.base_url)

    texts = asyncio.run(_chunk_texts(settings))
    bare = {backend: _bare_chunks_per_second(settings, backend, texts) for backend in EmbeddingBackend}
    baseline = bare[EmbeddingBackend.TORCH]
    figures = {
        "ingest_backend": str(settings.embedding.ingest_backend),
        "files": first.files_read,
        "files_skipped": len(first.skipped),
        "sections": first.sections,
        "chunks": first.chunks_added,
        "chunks_over_token_limit": first.chunks_over_limit,
        "wall_seconds": round(first.seconds, 1),
        "end_to_end_chunks_per_s": round(first.chunks_per_second, 1),
        "bare_chunks_per_s": round(baseline, 1),
        **{f"bare_{backend.replace('-', '_')}_chunks_per_s": round(rate, 1) for backend, rate in bare.items()},
        "batch_size": settings.embedding.batch_size,
        "ratio_end_to_end_to_bare": round(first.chunks_per_second / baseline, 3),
        "reingest_seconds": round(again.seconds, 2),
        "reingest_share_of_first": round(again.seconds / first.seconds, 4),
        "reingest_chunks_added": again.chunks_added,
    }
    if not args.no_retrieval:
        torch_settings = settings.model_copy(update={
            "index": torch_index, "embedding": settings.embedding.model_copy(update={"ingest_backend": "torch"})})
        reembedded = run_reembed(args.index, torch_settings)
        figures["reembed_torch_chunks_per_s"] = round(reembedded.chunks_per_second, 1)
        scores = _retrieval(settings, torch_index)
        for set_name in scores[args.index]:
            figures[f"{set_name}_in_corpus"] = scores[args.index][set_name]
            figures[f"{set_name}_in_corpus_torch"] = scores[torch_index][set_name]
    width = max(map(len, figures))
    for name, value in figures.items():
        print(f"{name:<{width}}  {value}")
    print("targets: ratio_end_to_end_to_bare >= 2, retrieval within 0.01 of the PyTorch twin, reingest_share_of_first <= 0.10")
    if args.json:
        emit_json(figures)


if __name__ == "__main__":
    main()
