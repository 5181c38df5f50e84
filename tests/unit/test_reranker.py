import pytest

from docent.tags import OTHER, SANITY_CHECKS, preprocess, tag_of
from services.reranker.rerank import rerank
from tests.conftest import SHARED, require
from training.reranker import TrainingDataError, load_qa_pairs, train_reranker

BASE = "https://docs.ray.io/en/master/"


def test_tag_is_the_first_path_segment_under_the_base_url():
    assert tag_of(f"{BASE}serve/scaling-and-resource-allocation.html#autoscaling", BASE) == "serve"
    assert tag_of(f"{BASE}ray-core/tasks.html", BASE) == "ray-core"
    assert tag_of(f"{BASE}workflows/index.html", BASE) == OTHER
    assert tag_of("https://elsewhere.example/serve/x.html", BASE) == OTHER


def test_preprocessing_splits_identifiers_as_the_reference_did():
    assert preprocess("RayDeepSpeedStrategy") == "ray deep speed strategy"
    assert preprocess("What is the default batch_size for map_batches?") == "what is the default batch size for map batch ##es ?"


def test_rerank_moves_the_predicted_area_first_keeping_order_then_cuts():
    sources = [f"{BASE}data/a.html", f"{BASE}serve/b.html", f"{BASE}data/c.html", f"{BASE}serve/d.html"]
    assert rerank(["a", "b", "c", "d"], sources, "serve", BASE, k=3) == ["b", "d", "a"]
    assert rerank(["a", "b", "c", "d"], sources, OTHER, BASE, k=2) == ["a", "b"]


def test_bad_training_data_is_a_clear_error(tmp_path):
    bad = tmp_path / "qa.json"
    bad.write_text('[{"question": "no source"}]')
    with pytest.raises(TrainingDataError, match="question, source"):
        load_qa_pairs(bad)
    with pytest.raises(TrainingDataError, match="not found"):
        load_qa_pairs(tmp_path / "missing.json")


def test_training_on_the_reference_data_matches_its_scores_and_sanity_checks(tmp_path):
    data = SHARED / "datasets" / "embedding_qa.json"
    require(data.is_file(), f"{data} is needed")
    result = train_reranker(load_qa_pairs(data), BASE)

    assert result.metrics["test_rows"] == 1146
    assert result.metrics["f1"] >= 0.9  # the reference: 0.915
    assert result.sanity_passed, result.sanity
    loaded = type(result.classifier).load(result.classifier.model.save(tmp_path / "reranker.zip"))
    questions = [q for q, _ in SANITY_CHECKS]
    assert [p.tag for p in loaded.predict(questions)] == [p.tag for p in result.classifier.predict(questions)]
    assert loaded.predict(["How do I enable Ray debug logs?"])[0].confident(0.99) == OTHER

    # Served with no rerank.base_url (no Ray default), the tags come from where it was trained.
    from docent.settings import Settings
    from docent.tags import TagPrediction
    from docent.types import SearchHit
    from services.reranker.service import RerankerService

    service = RerankerService(Settings(data_dir=tmp_path, rerank={"artifact": tmp_path / "reranker.zip"}))
    hits = [SearchHit(rank=n, score=1.0, source=f"{BASE}{area}/p.html", text="t", chunk_id=n)
            for n, area in enumerate(["data", "serve"], 1)]
    assert service.by_tag(hits, TagPrediction("serve", 0.99))[0].source == f"{BASE}serve/p.html"


def test_training_needs_to_know_whose_tags_they_are(tmp_path):
    from typer.testing import CliRunner

    from cli.main import app

    data = tmp_path / "qa.json"
    data.write_text('[{"question": "q", "source": "https://d.example/a/b.html"}]')
    result = CliRunner().invoke(app, ["train", "reranker", "--data", str(data), "--output", str(tmp_path / "r.zip")])
    assert result.exit_code == 2 and "--base-url" in result.output


async def test_a_cross_encoder_orders_hits_by_its_own_scores(tmp_path):
    """A BERT with an untrained head stands in for a cross-encoder: the order must follow its scores."""
    from docent.settings import Settings
    from docent.types import SearchHit
    from services.reranker.service import RerankerService

    settings = Settings(data_dir=tmp_path, rerank={"cross_encoder_model": "all-MiniLM-L6-v2"})
    service = RerankerService(settings)
    texts = ["Serve autoscaling adds replicas", "Read parquet files with Ray Data", "Tune searches hyperparameters"]
    hits = [SearchHit(rank=i, score=0.0, source=f"https://x/{i}", text=t, chunk_id=i) for i, t in enumerate(texts, 1)]
    reranked = await service.cross_rerank("how does serve autoscale?", hits)
    expected = service.cross_encoder.predict([("how does serve autoscale?", t) for t in texts])
    assert [h.text for h in reranked] == [texts[i] for i in sorted(range(3), key=lambda i: -expected[i])]
    assert [h.rank for h in reranked] == [1, 2, 3]
    assert [h.score for h in reranked] == sorted((float(s) for s in expected), reverse=True)
    assert service.classifier is None and await service.ready() == {}
