import json

import pytest
from typer.testing import CliRunner

from cli.main import app
from docent.linear_text import ArtifactError, LinearTextModel
from docent.routing import Router
from tests.conftest import SHARED, require
from training.router import RoutingDataError, evaluate_router, load_routing_rows, routing_scores, train_router

ROWS = [
    ("What is the default batch size for map_batches?", 1),
    ("How do I start a Ray cluster?", 1),
    ("What does ray.init do?", 1),
    ("How do I install Ray?", 1),
    ("Where are the logs stored?", 1),
    ("Write a full training script that tunes hyperparameters and compares three schedulers with code", 0),
    ("Compare the memory use of these two code examples and explain the difference in detail", 0),
    ("Given this stack trace and code, why does my custom actor deadlock?", 0),
    ("Write code for a multi-agent environment with custom rewards and explain it", 0),
    ("Explain with code how to combine Tune, Train and Serve in one pipeline", 0),
]


def test_router_learns_and_explains_its_decisions(tmp_path):
    router, metrics = train_router(ROWS, folds=2)
    assert set(metrics) >= {"precision", "recall", "f1"}
    decision = router.decide(["What is the default batch size?"])[0]
    assert decision.use_oss and "open-source LLM" in decision.reason
    assert not router.decide(["Write code and explain in detail how to compare two examples"])[0].use_oss

    loaded = Router.load(router.model.save(tmp_path / "router.zip"))
    assert loaded.decide(["How do I install Ray?"])[0].probability_oss == pytest.approx(
        router.decide(["How do I install Ray?"])[0].probability_oss
    )
    assert evaluate_router(loaded, ROWS)["rows"] == len(ROWS)


def test_weighted_and_open_source_figures_are_each_what_they_say():
    # Everything routed to the open-source LLM: its own label looks fine, the average over both does not.
    scores = routing_scores([1, 1, 1, 0], [1, 1, 1, 1])
    assert scores["precision"] == pytest.approx(0.75) and scores["recall"] == 1.0
    assert scores["f1"] == pytest.approx(6 / 7)
    assert scores["precision_weighted"] == pytest.approx(0.75 * 0.75)  # the strong label's 0 weighs a quarter
    assert scores["recall_weighted"] == pytest.approx(0.75)
    assert scores["f1_weighted"] == pytest.approx(0.75 * 6 / 7)
    assert scores["routed_to_oss"] == 1.0


def test_artifacts_refuse_tampering_and_the_wrong_kind(tmp_path):
    router, _ = train_router(ROWS, folds=2)
    path = router.model.save(tmp_path / "router.zip")
    with pytest.raises(ArtifactError, match="not a 'reranker'"):
        LinearTextModel.load(path, "reranker")
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(ArtifactError, match="not a docent model artifact"):
        LinearTextModel.load(tmp_path / "junk.zip", "router")


def test_bad_routing_data_is_a_clear_error(tmp_path):
    bad = tmp_path / "routing.jsonl"
    bad.write_text('{"question": "q", "target": 3}\n')
    with pytest.raises(RoutingDataError, match="target must be 0 or 1"):
        load_routing_rows(bad)


def test_cli_trains_and_evaluates_the_router(tmp_path, monkeypatch):
    data = SHARED / "datasets" / "routing-dataset-train.jsonl"
    require(data.is_file(), f"{data} is needed")
    monkeypatch.setenv("DOCENT_DATA_DIR", str(tmp_path))
    runner = CliRunner()

    trained = runner.invoke(app, ["train", "router", "--data", str(data), "--json"])
    assert trained.exit_code == 0, trained.output
    cv = json.loads(trained.output.strip().splitlines()[-1])["metrics"]
    assert cv["f1_weighted"] > 0.78  # ~0.82 in 5-fold CV here; the reference: 0.923 (weighted) on its own test set
    assert cv["f1"] > cv["f1_weighted"]  # the open-source label alone: ~95 % of the rows
    assert 0.9 < cv["routed_to_oss"] < 1  # the reference: 94.8 %

    evaluated = runner.invoke(app, ["eval", "router", "--data", str(data), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    scored = json.loads(evaluated.output.strip().splitlines()[-1])["metrics"]
    assert scored["rows"] == 1801
    assert {"precision_weighted", "recall_weighted", "f1_weighted", "precision", "recall", "f1", "routed_to_oss"} <= set(scored)

    table = runner.invoke(app, ["eval", "router", "--data", str(data)])
    assert "f1 (weighted)" in table.output and "open-source label only" in table.output

    missing = runner.invoke(app, ["eval", "router", "--data", str(tmp_path / "none.jsonl")])
    assert missing.exit_code == 2 and "not found" in missing.output
