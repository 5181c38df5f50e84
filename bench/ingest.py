"""Ingest throughput against bare sentence-transformers, and the cost of an unchanged re-ingest.

    python bench/ingest.py [--corpus DIR] [--index NAME] [--json]

Ingests the corpus into a fresh index, re-ingests it unchanged, then embeds the very
same chunk texts with bare sentence-transformers (same model, same batch size) and
prints both throughputs and their ratio. Targets: end-to-end ≥ 0.8 × bare; unchanged
re-ingest ≤ 10 % of the first run.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from common import RAY_DOCS, RAY_DOCS_CONFIG, RAY_DOCS_URL, emit_json, require_path

from docent.db import connect
from docent.embedding.model import load_embedder
from docent.settings import load_settings
from docent.store import IndexStore
from ingest.pipeline import run_ingest


async def _drop_and_fetch(settings, drop: bool):
    conn = await connect(settings)
    try:
        store = IndexStore(conn)
        if drop:
            if await store.get(settings.index_name):
                await store.drop(settings.index_name)
            return None
        index = await store.require(settings.index_name)
        _, chunks = await store.chunk_texts(index)
        return [c.embedding_text if index.config.include_titles else c.text for c in chunks]
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=str, default=str(RAY_DOCS))
    parser.add_argument("--base-url", default=RAY_DOCS_URL)
    parser.add_argument("--index", default="bench-ingest")
    parser.add_argument("--config", default=str(RAY_DOCS_CONFIG))
    parser.add_argument("--json", action="store_true", help="print one JSON object of the figures last")
    args = parser.parse_args()
    corpus = require_path(Path(args.corpus), "corpus")
    settings = load_settings(args.config, index=args.index)

    asyncio.run(_drop_and_fetch(settings, drop=True))
    first = run_ingest(corpus, settings, base_url=args.base_url)
    again = run_ingest(corpus, settings, base_url=args.base_url)

    texts = asyncio.run(_drop_and_fetch(settings, drop=False))
    embedder = load_embedder(settings.embedding)
    embedder.embed(texts[:64])  # warm-up, as the pipeline's actor is warm after its first block
    started = time.perf_counter()
    embedder.embed(texts)
    bare_seconds = time.perf_counter() - started

    figures = {
        "files": first.files_read,
        "files_skipped": len(first.skipped),
        "sections": first.sections,
        "chunks": first.chunks_added,
        "chunks_over_token_limit": first.chunks_over_limit,
        "wall_seconds": round(first.seconds, 1),
        "end_to_end_chunks_per_s": round(first.chunks_per_second, 1),
        "bare_chunks_per_s": round(len(texts) / bare_seconds, 1),
        "batch_size": settings.embedding.batch_size,
        "ratio_end_to_end_to_bare": round(first.chunks_per_second / (len(texts) / bare_seconds), 3),
        "reingest_seconds": round(again.seconds, 2),
        "reingest_share_of_first": round(again.seconds / first.seconds, 4),
        "reingest_chunks_added": again.chunks_added,
    }
    width = max(map(len, figures))
    for name, value in figures.items():
        print(f"{name:<{width}}  {value}")
    print("targets: ratio_end_to_end_to_bare >= 0.8, reingest_share_of_first <= 0.10")
    if args.json:
        emit_json(figures)


if __name__ == "__main__":
    main()
