"""What the benchmarks share: the Ray docs corpus, its public URL, and how to print figures."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
RAY_DOCS = SHARED / "corpora" / "ray-docs-2.7"
RAY_DOCS_URL = "https://docs.ray.io/en/master/"
EVAL_SET = SHARED / "datasets" / "eval-dataset-v1.jsonl"
EMBEDDING_QA = SHARED / "datasets" / "embedding_qa.json"
USER_QUESTIONS = ROOT / "evaluation" / "datasets" / "user-questions.jsonl"
REAL_QUESTIONS = ROOT / "evaluation" / "datasets" / "real-questions.jsonl"
RAY_DOCS_CONFIG = ROOT / "config" / "ray-docs.yaml"

sys.path.insert(0, str(ROOT))


def require_path(path: Path, what: str) -> Path:
    if not path.exists():
        sys.exit(f"{what} not found at {path}: the benchmarks read ../shared (see shared/README.md)")
    return path


def emit_json(figures: dict) -> None:
    """The last line of a benchmark's output with --json: one object of its figures."""
    print(json.dumps(figures, default=float))


async def index_pages(settings) -> set[str] | None:
    """The pages the settings' index has chunks of; None when there is no such index."""
    from docent.db import connect
    from docent.store import IndexStore

    conn = await connect(settings)
    try:
        store = IndexStore(conn)
        index = await store.get(settings.index_name)
        return None if index is None else await store.pages(index)
    finally:
        await conn.close()


async def ray_docs_index(name: str):
    """The settings of an existing index of the Ray docs and the pages it holds; exits when there is none."""
    from docent.settings import load_settings

    settings = load_settings(None, index=name)
    pages = await index_pages(settings)
    if pages is None:
        sys.exit(f"no index {name!r}: build one with bench/retrieval.py or docent ingest")
    return settings, pages


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
