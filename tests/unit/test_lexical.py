import pytest

from docent.lexical import LexicalIndex, LexicalIndexError, payload_checksum, tokenize
from docent.settings import LexicalSettings

TEXTS = [
    "Configure the batch size of map_batches with the batch_size argument.",
    "Ray Serve autoscaling adds replicas when requests queue up.",
    "Use ray.get to fetch the result of a remote task.",
    "The numGpus option reserves GPUs for an actor.",
]


def test_tokenize_splits_identifiers_the_same_way_for_chunks_and_queries():
    settings = LexicalSettings(stemming=False, stopwords=False)
    assert tokenize("map_batches", settings) == ["map", "batches"]
    assert tokenize("numGpus", settings) == ["numgpus", "num", "gpus"]
    assert tokenize("ray.data.Dataset", settings) == ["ray", "data", "dataset"]


def test_tokenize_drops_stop_words_and_stems():
    assert tokenize("How are the replicas scaling?", LexicalSettings()) == ["how", "replica", "scale"]


@pytest.mark.parametrize("backend", ["bm25s", "rank-bm25"])
def test_search_ranks_the_matching_chunk_first(backend):
    index = LexicalIndex.build([10, 11, 12, 13], TEXTS, LexicalSettings(backend=backend))
    assert index.search("how do I set the batch size in map_batches?", 2)[0].chunk_id == 10
    assert index.search("autoscaling replicas", 1)[0].chunk_id == 11
    assert index.search("zzz unknown words", 3) == []
    assert index.search("", 3) == []


def test_persisted_index_gives_the_same_results_and_checks_its_checksum():
    built = LexicalIndex.build([10, 11, 12, 13], TEXTS, LexicalSettings())
    payload = built.to_bytes()
    loaded = LexicalIndex.from_bytes(payload, payload_checksum(payload))
    for query in ("batch size", "GPUs for an actor", "remote task result"):
        assert [(h.chunk_id, round(h.score, 5)) for h in loaded.search(query, 3)] == [
            (h.chunk_id, round(h.score, 5)) for h in built.search(query, 3)
        ]
    with pytest.raises(LexicalIndexError, match="checksum"):
        LexicalIndex.from_bytes(payload[:-1] + b"x", payload_checksum(payload))


def test_bm25s_ranks_like_rank_bm25_on_these_texts():
    a = LexicalIndex.build(range(4), TEXTS, LexicalSettings(backend="bm25s"))
    b = LexicalIndex.build(range(4), TEXTS, LexicalSettings(backend="rank-bm25"))
    for query in ("batch size", "replicas queue", "remote task", "actor GPUs"):
        assert [h.chunk_id for h in a.search(query, 4)] == [h.chunk_id for h in b.search(query, 4)]
