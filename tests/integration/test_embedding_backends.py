"""How ingest embeds (ONNX Runtime int8 by default, PyTorch when asked) and re-embedding an index with another model."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from docent.db import connect
from docent.settings import Settings
from docent.store import IndexNotFound, IndexStore
from ingest.pipeline import run_ingest
from ingest.reembed import ReembedError, run_reembed
from tests.integration.test_ingest import BASE_URL, index_state

pytestmark = pytest.mark.integration


def vectors(settings: Settings) -> dict[tuple[str, int], tuple[str, str, np.ndarray]]:
    """(uri, ordinal) -> (text, source, vector) of every chunk in the index."""

    async def read():
        conn = await connect(settings)
        try:
            index = await IndexStore(conn).require(settings.index_name)
            rows = await conn.fetch(
                f"SELECT d.uri, c.ordinal, c.text, c.source, c.embedding::text AS v FROM {index.table} c"
                " JOIN documents d ON d.id = c.document_id"
            )
            return {(r["uri"], r["ordinal"]): (r["text"], r["source"], np.array(json.loads(r["v"]))) for r in rows}
        finally:
            await conn.close()

    return asyncio.run(read())


def with_backend(settings: Settings, backend: str) -> Settings:
    return settings.model_copy(update={"embedding": settings.embedding.model_copy(update={"ingest_backend": backend})})


def test_ingest_embeds_with_onnx_int8_by_default_close_to_pytorch(ray_local, docs_tree, index_name):
    onnx = Settings(index=f"{index_name}-onnx")
    assert onnx.embedding.ingest_backend == "onnx-int8"
    torch = with_backend(Settings(index=f"{index_name}-torch"), "torch")
    run_ingest(docs_tree, onnx, base_url=BASE_URL)
    run_ingest(docs_tree, torch, base_url=BASE_URL)

    quantized, exact = vectors(onnx), vectors(torch)
    assert quantized.keys() == exact.keys()
    assert all(quantized[k][:2] == exact[k][:2] for k in exact)  # the same chunks, only their vectors differ
    cosines = np.array([quantized[k][2] @ exact[k][2] for k in exact])
    assert cosines.min() > 0.85 and cosines.mean() > 0.95
    assert cosines.max() < 0.99999  # int8 vectors: not PyTorch's (that would mean ONNX never ran)
    assert list(onnx.onnx_dir.rglob("model-int8.onnx"))


def test_an_index_is_reembedded_from_its_chunks_with_another_model(ray_local, settings, docs_tree, tmp_path, index_name):
    from sentence_transformers import SentenceTransformer, models

    from docent.embedding.model import resolve_model_path

    base = SentenceTransformer(resolve_model_path("all-MiniLM-L6-v2"), device="cpu")
    projected = SentenceTransformer(modules=[*base, models.Dense(384, 128)], device="cpu")
    model_dir = tmp_path / "minilm-128"
    projected.save(str(model_dir))
    run_ingest(docs_tree, settings, base_url=BASE_URL)

    target = Settings(index=f"{index_name}-128", embedding={"model": str(model_dir)})
    report = run_reembed(settings.index_name, target)

    old, new = vectors(settings), vectors(target)
    assert report.chunks == len(old) and report.documents == 6
    assert {k: v[:2] for k, v in new.items()} == {k: v[:2] for k, v in old.items()}
    assert {len(v[2]) for v in new.values()} == {128}
    state = index_state(target)
    assert state["hnsw"] and state["lexical_revision"] == state["revision"] and state["duplicates"] == 0
    again = run_ingest(docs_tree, target, base_url=BASE_URL)  # the content hashes came along: nothing to redo
    assert again.files_read == 0 and again.files_unchanged == 6 and again.chunks_added == 0

    with pytest.raises(ReembedError, match="exists"):
        run_reembed(settings.index_name, target)
    with pytest.raises(ReembedError, match="name of its own"):
        run_reembed(settings.index_name, settings)
    with pytest.raises(IndexNotFound):
        run_reembed("no-such-index", Settings(index=f"{index_name}-other"))


def test_cli_reembed_reports_and_refuses_with_messages(ray_local, settings, docs_tree, index_name):
    run_ingest(docs_tree, settings, base_url=BASE_URL)

    def docent(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "cli", *args], check=False, capture_output=True, text=True,
                              env={**os.environ}, timeout=300)

    done = docent("reembed", settings.index_name, "--index", f"{index_name}-again")
    assert done.returncode == 0, done.stderr
    assert f"index {index_name}-again:" in done.stdout and "chunks of 6 documents" in done.stdout

    taken = docent("reembed", settings.index_name, "--index", f"{index_name}-again")
    assert taken.returncode == 2 and "exists" in taken.stderr + taken.stdout and "Traceback" not in taken.stderr
    unknown = docent("reembed", "no-such-index", "--index", f"{index_name}-x")
    assert unknown.returncode == 1 and "no index named 'no-such-index'" in unknown.stderr + unknown.stdout
