import numpy as np
import pytest

from docent.embedding.model import load_embedder
from docent.settings import EmbeddingSettings
from docent.types import SearchHit
from services.generator.extractive import ExtractiveGenerator, maximal_marginal_relevance, split_sentences


def hit(rank: int, text: str) -> SearchHit:
    return SearchHit(rank=rank, score=1.0, source=f"https://docs.example/p{rank}.html", text=text, chunk_id=rank)


HITS = [
    hit(1, "Ray Serve scales replicas with autoscaling. The autoscaler adds replicas when the queue grows long."),
    hit(2, "The autoscaler adds replicas when the queue grows long. Replicas are removed when traffic drops again."),
    hit(3, "Ray Data reads Parquet files from S3. Datasets are split into blocks for parallel processing."),
]


@pytest.fixture(scope="module")
def embedder():
    return load_embedder(EmbeddingSettings(device="cpu"))


def test_sentences_keep_the_number_of_their_source():
    sentences = split_sentences(HITS)
    assert [s.source_number for s in sentences] == [1, 1, 2, 2, 3, 3]
    assert sentences[0].text == "Ray Serve scales replicas with autoscaling."


def test_mmr_prefers_relevant_then_different():
    query = np.array([1.0, 0.0])
    candidates = np.array([[1.0, 0.0], [0.99, 0.141], [0.6, 0.8]])
    assert maximal_marginal_relevance(query, candidates, 2, weight=1.0) == [0, 1]
    assert maximal_marginal_relevance(query, candidates, 2, weight=0.3) == [0, 2]


def test_answers_with_relevant_diverse_cited_sentences(embedder):
    generator = ExtractiveGenerator(embedder, sentences=2, diversity_weight=0.7)
    answer = generator.answer("When does Ray Serve add replicas?", HITS)

    assert len(answer.sentences) == 2
    assert all(s.source_number in (1, 2) for s in answer.sentences)  # Serve, not the Ray Data page
    assert sum("adds replicas when the queue" in s.text for s in answer.sentences) <= 1  # no repeat
    assert answer.text.endswith(f"[{answer.sentences[-1].source_number}]")
    assert "".join(answer.tokens()) == answer.text


def test_no_sentences_no_answer(embedder):
    assert ExtractiveGenerator(embedder, 3, 0.7).answer("anything?", [hit(1, "short")]).text == ""


@pytest.mark.parametrize(
    ("text", "prose"),
    [
        ("Ray Client can be used when you want to connect an interactive shell to a cluster.", True),
        ("The frequency of artifact syncing can be configured via SyncConfig.", True),
        ("Getting Started with Ray Serve", False),  # a heading
        ("# get a list of checkpoints checkpoints = [i.checkpoint for i in results]", False),
        ("ray.init ray.shutdown ray.is_initialized ray.job_config.JobConfig", False),
        ("| embedding | model, provider | the embedding model |", False),
        ("config = {'lr': 0.1}; trainer.fit()", False),
        ("Too short.", False),
    ],
)
def test_only_prose_is_quoted(text, prose):
    from services.generator.extractive import is_prose

    assert is_prose(text) is prose
