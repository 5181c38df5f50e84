"""`docent train router --from-eval`: labels from two judged evaluations of the same questions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from evaluation.routing import labels_from_evaluations
from tests.unit.test_router import ROWS
from training.router import RoutingDataError, train_router

# (question, OSS LLM's quality, strong LLM's quality); the expected label at tolerance 0 and at 1
JUDGED = [
    ("What is the default batch size for map_batches?", 5, 5, 1, 1),
    ("How do I start a Ray cluster?", 4, 3, 1, 1),
    ("What does ray.init do?", 4, 5, 0, 1),
    ("How do I install Ray?", 5, 4, 1, 1),
    ("Where are the logs stored?", 3, 3, 1, 1),
    ("Write a full training script that tunes hyperparameters and compares three schedulers with code", 2, 5, 0, 0),
    ("Compare the memory use of these two code examples and explain the difference in detail", 1, 4, 0, 0),
    ("Given this stack trace and code, why does my custom actor deadlock?", 2, 4, 0, 0),
    ("Write code for a multi-agent environment with custom rewards and explain it", 3, 5, 0, 0),
    ("Explain with code how to combine Tune, Train and Serve in one pipeline", 1, 5, 0, 0),
]


def evaluation_file(path: Path, scores: dict[str, int | None]) -> Path:
    rows = [{"question": q, "source": "s", "scores": {"hit": True, "quality": s}} for q, s in scores.items()]
    path.write_text(json.dumps({"config": {}, "rows": rows, "aggregates": {}}))
    return path


@pytest.fixture
def evaluations(tmp_path) -> tuple[Path, Path]:
    oss = {q: o for q, o, *_ in JUDGED} | {"Unjudged question?": None, "Only the OSS LLM saw this?": 5}
    strong = {q: s for q, _, s, *_ in JUDGED} | {"Unjudged question?": 4}
    return evaluation_file(tmp_path / "oss.json", oss), evaluation_file(tmp_path / "strong.json", strong)


@pytest.mark.parametrize(("tolerance", "column"), [(0.0, 3), (1.0, 4)])
def test_labels_follow_the_tolerance(evaluations, tolerance, column):
    labels = labels_from_evaluations(*evaluations, tolerance)
    assert labels.rows == [(row[0], row[column]) for row in JUDGED]
    assert (labels.unscored, labels.unmatched) == (1, 1)


def test_files_that_cannot_give_labels_are_clear_errors(tmp_path, evaluations):
    with pytest.raises(RoutingDataError, match="evaluation not found"):
        labels_from_evaluations(tmp_path / "missing.json", evaluations[1], 0)
    (tmp_path / "other.json").write_text("[1, 2]")
    with pytest.raises(RoutingDataError, match="not an evaluation.json"):
        labels_from_evaluations(tmp_path / "other.json", evaluations[1], 0)
    unjudged = evaluation_file(tmp_path / "unjudged.json", {"q": None})
    with pytest.raises(RoutingDataError, match="no quality scores"):
        labels_from_evaluations(unjudged, evaluations[1], 0)
    elsewhere = evaluation_file(tmp_path / "elsewhere.json", {"another question": 3})
    with pytest.raises(RoutingDataError, match="share no questions"):
        labels_from_evaluations(evaluations[0], elsewhere, 0)


def test_too_few_labels_of_a_kind_cannot_be_cross_validated():
    with pytest.raises(RoutingDataError, match="at least 2 questions of each label"):
        train_router(ROWS[:5] + ROWS[5:6])


def test_the_cli_trains_from_evaluations_and_writes_the_labels(tmp_path, evaluations):
    labels_path, artifact = tmp_path / "labels.jsonl", tmp_path / "router.zip"
    result = CliRunner().invoke(app, ["train", "router", "--from-eval", *map(str, evaluations), "--tolerance", "1",
                                      "--labels-out", str(labels_path), "--output", str(artifact), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["labels"] == {"rows": len(JUDGED), "open_source": 5, "unscored": 1, "unmatched": 1}
    assert artifact.is_file()
    written = [json.loads(line) for line in labels_path.read_text().splitlines()]
    assert [(r["question"], r["target"]) for r in written] == [(row[0], row[4]) for row in JUDGED]


def test_the_cli_wants_exactly_one_source_of_labels(tmp_path, evaluations):
    neither = CliRunner().invoke(app, ["train", "router"])
    both = CliRunner().invoke(app, ["train", "router", "--data", "x.jsonl", "--from-eval", *map(str, evaluations)])
    for result in (neither, both):
        assert result.exit_code == 2 and "--data FILE or --from-eval" in result.output
