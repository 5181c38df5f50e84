"""Pure pieces of the query path: SSE framing, LLM choice, the query-vector cache, static vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from docent.client import parse_sse
from docent.embedding.model import StaticTokenEmbedder, load_embedder
from docent.routing import RouteDecision
from docent.settings import EmbeddingSettings
from docent.types import EmbeddingBackend, QueryRequest, UnknownLLM
from services.embedder.queries import QueryEmbedder
from services.gateway.app import sse
from services.router.router import choose_llm


def test_sse_events_round_trip_through_the_client_parser():
    frames = sse("sources", {"sources": [{"text": "two\nlines"}]}) + sse("token", {"text": "Ray "}) + b": ping\n\n"
    assert list(parse_sse(frames.decode().split("\n"))) == [
        ("sources", {"sources": [{"text": "two\nlines"}]}),
        ("token", {"text": "Ray "}),
    ]


def test_every_sse_frame_is_one_event_line_one_data_line_and_a_blank_line():
    frame = sse("done", {"llm": "x"})
    assert frame == b'event: done\ndata: {"llm":"x"}\n\n'


@pytest.mark.parametrize(
    ("decision", "expected"),
    [(RouteDecision(True, 0.8), "small"), (RouteDecision(False, 0.3), "big"), (None, "big")],
)
def test_the_router_sends_confident_questions_to_the_open_source_llm(decision, expected):
    route = choose_llm(decision, ["small", "big"], "small", "big", None)
    assert route.llm == expected
    assert route.probability_oss == (decision.probability_oss if decision else None)


def test_the_request_choice_wins_and_unknown_names_are_refused():
    assert choose_llm(RouteDecision(True, 0.9), ["small", "big"], "small", "big", "big").llm == "big"
    assert choose_llm(None, ["small"], None, None, "extractive").llm == "extractive"
    with pytest.raises(UnknownLLM, match="known: small, extractive"):
        choose_llm(None, ["small"], None, None, "gpt-9")


def test_without_llms_the_answer_is_extractive_and_with_one_it_is_that_one():
    assert choose_llm(None, [], None, None, None).llm == "extractive"
    assert choose_llm(None, ["only"], None, None, None).llm == "only"


def test_query_request_strips_and_refuses_blank_queries():
    assert QueryRequest(query="  why?  ").query == "why?"
    with pytest.raises(ValueError, match="empty"):
        QueryRequest(query=" \n ")


@pytest.fixture(scope="module")
def minilm():
    return load_embedder(EmbeddingSettings())


def test_cached_query_vectors_equal_computed_ones_and_the_cache_is_bounded(minilm):
    embedder = QueryEmbedder(EmbeddingSettings(query_backend="torch"), cache_size=2, onnx_dir=Path("unused"))
    embedder.models[EmbeddingSettings().model] = minilm
    first = embedder.embed(["a question", "another question"])
    again = embedder.embed(["a question"])
    assert np.allclose(first[0], again[0]) and (embedder.hits, embedder.misses) == (1, 2)
    embedder.embed(["a third question"])
    assert len(embedder.cache) == 2 and ("all-MiniLM-L6-v2", "another question") not in embedder.cache


def test_without_a_cache_every_query_is_computed(minilm):
    embedder = QueryEmbedder(EmbeddingSettings(query_backend="torch"), cache_size=0, onnx_dir=Path("unused"))
    embedder.models[EmbeddingSettings().model] = minilm
    embedder.embed(["q", "q"])
    assert embedder.misses == 1 and not embedder.cache


def test_static_token_vectors_rank_a_related_sentence_above_an_unrelated_one(minilm):
    static = StaticTokenEmbedder(minilm)
    question, related, unrelated = static.embed(
        ["how does autoscaling work in serve", "Serve autoscaling adds replicas as requests grow", "Read parquet files"]
    )
    assert question @ related > question @ unrelated
    assert np.allclose(np.linalg.norm(static.embed(["x y z"]), axis=1), 1.0)


def test_onnx_query_vectors_equal_pytorch_ones_and_int8_ones_stay_close(minilm, tmp_path):
    from docent.embedding.onnx import OnnxEmbedder

    queries = ["How do I set the batch size in map_batches?", "what is an actor", "word " * 400]
    exact = OnnxEmbedder(minilm, tmp_path, quantized=False)
    assert np.abs(exact.embed(queries) - minilm.embed(queries)).max() < 1e-4
    assert list(tmp_path.rglob("model.onnx"))
    quantized = OnnxEmbedder(minilm, tmp_path, quantized=True)
    assert ((quantized.embed(queries) * minilm.embed(queries)).sum(axis=1) > 0.85).all()


def test_onnx_embeds_many_texts_in_length_sorted_batches_and_keeps_their_order(minilm, tmp_path):
    from docent.embedding.onnx import OnnxEmbedder

    texts = [("word " * n).strip() + f" {n}" for n in (3, 90, 1, 40, 7, 300, 12, 2)]
    exact = OnnxEmbedder(minilm, tmp_path, quantized=False)
    exact.batch_size = 3  # three batches, each padded to its own longest text
    assert np.abs(exact.embed(texts) - minilm.embed(texts)).max() < 1e-4
    assert exact.embed([]).shape == (0, minilm.dimension)


def test_ingest_embeds_on_a_gpu_with_pytorch_whatever_the_backend(monkeypatch):
    from docent.embedding import onnx

    assert onnx.ingest_backend(EmbeddingSettings()) == EmbeddingBackend.ONNX_INT8
    assert onnx.ingest_backend(EmbeddingSettings(device="cuda:0")) == EmbeddingBackend.TORCH
    monkeypatch.setattr(onnx, "default_device", lambda: "cuda")
    assert onnx.ingest_backend(EmbeddingSettings(ingest_backend="onnx")) == EmbeddingBackend.TORCH


def test_the_query_embedder_uses_int8_onnx_by_default_and_pytorch_when_asked(tmp_path):
    onnx = QueryEmbedder(EmbeddingSettings(), cache_size=0, onnx_dir=tmp_path)
    assert "onnx-int8" in onnx.model().name
    torch_backed = QueryEmbedder(EmbeddingSettings(query_backend="torch"), cache_size=0, onnx_dir=tmp_path)
    assert "onnx" not in torch_backed.model().name
