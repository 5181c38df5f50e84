"""`docent finetune embeddings`: real index of the fixture site, the real model, a few training steps."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torch

from docent.datasets import held_out
from docent.db import connect
from docent.embedding.model import load_embedder, resolve_model_path
from docent.settings import EmbeddingSettings, Settings
from docent.store import IndexStore
from ingest.pipeline import run_ingest
from tests.conftest import FIXTURES, ROOT
from training.embeddings import (
    MANIFEST,
    FinetuneError,
    check_out_dir,
    finetune_embeddings,
    load_pairs_file,
    load_training_pairs,
    split_pairs,
)

pytestmark = pytest.mark.integration

BASE_URL = "https://orbit.example/docs/"
MISSING = f"{BASE_URL}security/tls.html#certificates"  # no such section in the index
# Short inputs and small batches: a training step takes a fraction of a second on a CPU.
FAST = {"embedding": {"max_seq_length": 64}, "finetune": {"batch_size": 4, "validation_fraction": 0.25, "seed": 7}}


async def _sections(settings: Settings) -> dict[str, str]:
    conn = await connect(settings)
    try:
        _, chunks = await IndexStore(conn).chunk_texts(await IndexStore(conn).require(settings.index_name))
    finally:
        await conn.close()
    return {c.source: c.section_title or c.page_title for c in chunks}


@pytest.fixture(scope="module")
def orbit(ray_local, tmp_path_factory) -> tuple[Settings, Path]:
    """An index of the fixture site and a pairs file: two questions per section but two, plus one the index lacks."""
    work = tmp_path_factory.mktemp("finetune")
    shutil.copytree(FIXTURES / "site", work / "docs")
    settings = Settings(index=f"ft-{uuid.uuid4().hex[:8]}", chunking={"chunk_size": 200, "chunk_overlap": 20}, **FAST)
    run_ingest(work / "docs", settings, base_url=BASE_URL)
    sections = asyncio.run(_sections(settings))
    assert len(sections) >= 8
    asked = sorted(sections)[:-2]  # the last two are left to the evaluator as distractors
    rows = [{"question": f"{ask} {sections[source]}?", "source": source, "answer": ""}
            for source in asked for ask in ("What is said about", "How do I use")]
    rows.append({"question": "How do I configure TLS certificates?", "source": MISSING, "answer": ""})
    (work / "golden.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))  # a golden set's shape
    return settings, work


@functools.cache
def _tensors(folder: str) -> dict[str, torch.Tensor]:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(folder, device="cpu")
    return {name: p.detach().clone() for name, p in model[0].auto_model.named_parameters()}


WORDS = "embeddings.word_embeddings.weight"


def test_pairs_get_their_section_text_and_unknown_sources_are_dropped(orbit):
    settings, work = orbit
    training = asyncio.run(load_training_pairs(settings, work / "golden.jsonl"))
    assert training.dropped == 1 and training.dropped_sources == 1 and training.rows == len(training.pairs) + 1
    assert len(training.distractors) == 2
    assert not asyncio.run(load_training_pairs(settings, work / "golden.jsonl", distractors=0)).distractors
    retries = next(p for p in training.pairs if p.source.endswith("#retries-and-backoff"))
    assert "max_retries" in retries.text and retries.text.startswith("Configuring the worker pool")

    sample = asyncio.run(load_training_pairs(settings, work / "golden.jsonl", sample=6))
    assert len(sample.pairs) == 6
    assert sample.pairs == asyncio.run(load_training_pairs(settings, work / "golden.jsonl", sample=6)).pairs  # seeded

    kept = asyncio.run(load_training_pairs(settings, work / "golden.jsonl", skip_held_out=True))
    held = [p for p in training.pairs if held_out(p.question)]
    assert held and kept.held_out == len(held)  # the missing source's question is not in the held-out tenth
    assert kept.pairs == [p for p in training.pairs if not held_out(p.question)]

    train, validation = split_pairs(training.pairs, 0.25, seed=7)
    assert {p.source for p in train}.isdisjoint({p.source for p in validation})  # whole sections held out
    assert len(train) + len(validation) == len(training.pairs) and validation


def test_full_mode_changes_every_layer_and_the_folder_is_an_embedding_model(orbit, tmp_path):
    settings, work = orbit
    training = asyncio.run(load_training_pairs(settings, work / "golden.jsonl"))
    out = tmp_path / "full"
    result = finetune_embeddings(settings, training, out, mode="full")

    assert result.steps >= 2 and result.trainable_parameters == result.total_parameters
    assert set(result.metrics_before) == set(result.metrics_after) == {"accuracy@1", "accuracy@10", "mrr@10", "ndcg@10"}
    assert len(result.metrics_per_epoch) == 1 and result.validation_corpus == result.validation_sections + 2
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["mode"] == "full" and manifest["dropped"] == 1 and manifest["base_model"] == "all-MiniLM-L6-v2"

    base, tuned = _tensors(resolve_model_path("all-MiniLM-L6-v2")), _tensors(str(out))
    assert not torch.equal(base[WORDS], tuned[WORDS])
    assert not torch.equal(base["encoder.layer.0.attention.self.query.weight"], tuned["encoder.layer.0.attention.self.query.weight"])

    embedder = load_embedder(EmbeddingSettings(model=str(out)))  # as `embedding.model: DIR` loads it
    vectors = embedder.embed(["How many times is a failed job retried?"])
    assert vectors.shape == (1, 384) and abs(float((vectors**2).sum()) - 1) < 1e-4


def test_embedding_layer_mode_trains_only_word_vectors_and_adds_corpus_words(orbit, tmp_path):
    settings, work = orbit
    settings = settings.model_copy(update={"finetune": settings.finetune.model_copy(update={"learning_rate": 1e-3})})
    training = asyncio.run(load_training_pairs(settings, work / "golden.jsonl"))
    out = tmp_path / "el"
    result = finetune_embeddings(settings, training, out, mode="embedding-layer", add_vocab=True)

    assert result.new_tokens > 0 and result.metrics_with_new_words
    base, tuned = _tensors(resolve_model_path("all-MiniLM-L6-v2")), _tensors(str(out))
    assert tuned[WORDS].shape[0] == base[WORDS].shape[0] + result.new_tokens
    assert not torch.equal(base[WORDS], tuned[WORDS][: base[WORDS].shape[0]])
    frozen = [name for name in base if name != WORDS]
    assert frozen and all(torch.equal(base[name], tuned[name]) for name in frozen)

    embedder = load_embedder(EmbeddingSettings(model=str(out)))
    word = result.new_token_examples[0]
    assert embedder.model.tokenizer.tokenize(f"the {word} setting") == ["the", word, "setting"]
    assert embedder.embed([f"What is {word}?"]).shape == (1, 384)


def test_the_cli_trains_and_refuses_bad_input_in_one_line(orbit, tmp_path):
    settings, work = orbit
    out = tmp_path / "cli"
    env = {**os.environ, "DOCENT_EMBEDDING__MAX_SEQ_LENGTH": "64"}
    command = [sys.executable, "-m", "cli", "finetune", "embeddings", "--data", str(work / "golden.jsonl"),
               "--index", settings.index_name, "--batch-size", "4", "--validation-fraction", "0.25", "--sample", "16"]
    done = subprocess.run([*command, "--out", str(out), "--mode", "embedding-layer", "--json"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["mode"] == "embedding-layer" and result["dropped"] == 1 and (out / MANIFEST).is_file()

    refused = subprocess.run([*command, "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=120, check=False)
    assert refused.returncode == 2 and "not empty" in refused.stderr and "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) <= 3  # one message, wrapped at most by the terminal width


def test_inputs_that_cannot_make_a_run_are_refused(orbit, tmp_path):
    settings, work = orbit
    (tmp_path / "bad.json").write_text('[{"question": "q"}]')
    with pytest.raises(FinetuneError, match="`source`"):
        load_pairs_file(tmp_path / "bad.json")
    with pytest.raises(FinetuneError, match="not found"):
        load_pairs_file(tmp_path / "missing.json")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(FinetuneError, match="not empty"):
        check_out_dir(tmp_path / "busy", overwrite=False)
    with pytest.raises(FinetuneError, match="holds no fine-tuned model"):
        check_out_dir(tmp_path / "busy", overwrite=True)
    training = asyncio.run(load_training_pairs(settings, work / "golden.jsonl", sample=4))
    with pytest.raises(FinetuneError, match="do not fill one batch"):
        finetune_embeddings(settings, training, tmp_path / "small")
    with pytest.raises(FinetuneError, match="mode"):
        finetune_embeddings(settings, training, tmp_path / "small", mode="adapter")
