"""`docent experiment`: a 3-trial Ray Tune experiment on the fixture site, tracked in a real MLflow store.

The trials answer with the tests' OpenAI-compatible server (`echo`, priced) and are judged
by its `judge` model, so every metric the experiment logs has a real source.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from docent.db import connect
from docent.settings import load_settings
from docent.store import IndexStore
from evaluation.experiment import base_settings, build_indexes, plan_experiment, run_experiment
from evaluation.space import load_space
from evaluation.tracking import tracking_uri
from tests.conftest import FIXTURES, ROOT
from tests.llm_server import JUDGE_SCORE

pytestmark = pytest.mark.integration

BASE_URL = "https://orbit.example/docs/"
QUESTIONS = [
    {"question": "How many times is a failed job retried?", "source": f"{BASE_URL}guide/configuration.html#retries-and-backoff"},
    {"question": "How do I install Orbit with pip?", "source": f"{BASE_URL}guide/install.html#install-pip"},
    {"question": "How do I cancel a running job?", "source": f"{BASE_URL}api/client.html#client-cancel"},
]
REFERENCES = [{"question": q["question"], "answer": "See the Orbit guide [1]."} for q in QUESTIONS]
LABELS = ["chunk_size=200,num_chunks=3", "chunk_size=400,num_chunks=3", "chunk_size=200,num_chunks=1"]
ECHO_PRICES = {"prompt_price": 2.0, "sampled_price": 4.0}


def llm_settings(llm_server) -> dict:
    return {"generation": {"llms": [
        {"name": "echo", "model": "echo", "base_url": llm_server.base_url, **ECHO_PRICES},
        {"name": "judge", "model": "judge", "base_url": llm_server.base_url},
    ]}}


@pytest.fixture(scope="module")
def experiment(ray_local, llm_server, tmp_path_factory):
    work = tmp_path_factory.mktemp("experiment")
    shutil.copytree(FIXTURES / "site", work / "orbit")
    (work / "eval.jsonl").write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    (work / "references.json").write_text(json.dumps(REFERENCES))
    name = f"orbit-{uuid.uuid4().hex[:6]}"
    space = {
        "name": name, "corpus": "orbit", "base_url": BASE_URL, "eval": "eval.jsonl", "references": "references.json",
        "judge": "judge", "settings": llm_settings(llm_server),
        "fixed": {"chunk_size": 200, "num_chunks": 3, "llm": "echo"},
        "sweeps": {"chunk_size": [200, 400], "num_chunks": [1]},
    }
    (work / "space.yaml").write_text(yaml.safe_dump(space))
    plan = plan_experiment(load_space(work / "space.yaml"), base_settings(load_space(work / "space.yaml"), None))
    reports = build_indexes(plan)
    result = run_experiment(plan)
    return work, plan, reports, result


def _client(plan):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri(plan.base))
    return client, client.get_experiment_by_name(plan.space.name)


def test_every_trial_runs_once_per_configuration_and_indexes_are_shared(experiment):
    _, plan, reports, result = experiment
    assert sorted(result.finished) == sorted(LABELS)
    assert result.failed == {} and result.reused == []
    # three trials, two chunkings: the 200-char index serves two trials and was built once
    assert sorted(reports) == sorted({t.index for t in plan.trials}) and len(reports) == 2
    assert all(r.chunks_added > 0 for r in reports.values())


async def test_indexes_exist_with_the_trials_chunking(experiment):
    _, plan, _, _ = experiment
    conn = await connect(plan.base)
    try:
        store = IndexStore(conn)
        for trial in plan.trials:
            index = await store.require(trial.index)
            assert index.config.chunk_size == trial.settings.chunking.chunk_size
    finally:
        await conn.close()


def test_runs_land_in_mlflow_with_params_metrics_artifacts_and_the_eval_set(experiment):
    _, plan, _, _ = experiment
    client, found = _client(plan)
    runs = client.search_runs([found.experiment_id])
    assert len(runs) == 3 and {r.info.status for r in runs} == {"FINISHED"}
    for run in runs:
        params, metrics = run.data.params, run.data.metrics
        assert {"chunk_size", "num_chunks", "llm", "index"} <= set(params)
        assert params["llm"] == "echo"
        assert metrics["quality_score"] == JUDGE_SCORE  # every answer judged by the test judge
        assert 0 <= metrics["retrieval_score"] <= 1 and metrics["questions"] == len(QUESTIONS)
        assert metrics["cost_per_query"] > 0  # echo is priced and reports usage
        assert metrics["cost_per_query/gpt-4"] > metrics["cost_per_query/llama-2-7b"] > 0
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"responses.jsonl", "evaluation.json", "config.json", "judgements.jsonl"} <= artifacts
        (dataset,) = [d.dataset for d in run.inputs.dataset_inputs]
        assert dataset.name == "eval.jsonl" and dataset.digest == plan.eval_set.sha256[:16]
    by_chunks = {r.data.params["num_chunks"]: r.data.metrics["mean_prompt_tokens"] for r in runs
                 if r.data.params["chunk_size"] == "200"}
    assert by_chunks["3"] > by_chunks["1"]  # more context, more prompt tokens


def test_a_rerun_reuses_finished_trials(experiment):
    work, plan, _, _ = experiment
    space = load_space(work / "space.yaml")
    again = plan_experiment(space, base_settings(space, None))
    assert again.pending == [] and all(t.reused_run for t in again.trials)
    assert run_experiment(again).reused == [t.label for t in plan.trials]
    widened = yaml.safe_load((work / "space.yaml").read_text())
    widened["sweeps"]["num_chunks"] = [1, 2]
    (work / "wider.yaml").write_text(yaml.safe_dump(widened))
    wider = plan_experiment(load_space(work / "wider.yaml"), base_settings(space, None))
    assert [t.label for t in wider.pending] == ["chunk_size=200,num_chunks=2"]


def _docent(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, check=False)
    done.stderr = " ".join(done.stderr.split())  # messages are wrapped to the terminal's width
    return done


def test_report_writes_the_table_and_plots(experiment):
    work, plan, _, _ = experiment
    done = _docent("experiment", "report", plan.space.name, "--out", str(work / "report"), "--json", cwd=work)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert len(report["trials"]) == 3
    assert [t["metrics"]["quality_score"] for t in report["trials"]] == [JUDGE_SCORE] * 3
    files = {Path(f).name for f in report["files"]}
    assert {"quality_vs_retrieval.png", "parallel_coordinates.html", "cost_vs_quality.png"} <= files
    missing = _docent("experiment", "report", "no-such-experiment", cwd=work)
    assert missing.returncode != 0 and "no experiment 'no-such-experiment'" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_promote_is_gated_by_the_served_configuration(experiment, llm_server):
    """mean_prompt_tokens grows with num_chunks, so the 3-chunk trials beat a served 1-chunk setup for sure."""
    work, plan, _, _ = experiment
    wide = next(t for t in plan.trials if t.label == LABELS[1])
    narrow = next(t for t in plan.trials if t.label == LABELS[2])
    serving = work / "serving.yaml"
    serving.write_text(yaml.safe_dump(
        {"index": narrow.index, "chunking": {"chunk_size": 200}, "retrieval": {"num_chunks": 1}} | llm_settings(llm_server)
    ))
    before = serving.read_text()
    refused = _docent("--config", str(serving), "experiment", "promote", plan.space.name,
                      "--metric", "mean_prompt_tokens", "--margin", "1000000", "--json", cwd=work)
    assert refused.returncode == 1, refused.stderr
    decision = json.loads(refused.stdout)
    assert decision["promoted"] is False and "below the margin" in decision["reason"]
    assert decision["candidate"] > decision["served"]
    assert serving.read_text() == before  # nothing changed

    promoted = _docent("--config", str(serving), "experiment", "promote", plan.space.name,
                       "--metric", "mean_prompt_tokens", "--json", cwd=work)
    assert promoted.returncode == 0, promoted.stderr
    best = json.loads(promoted.stdout)["best"]
    assert best in LABELS[:2]
    settings = load_settings(serving)
    assert settings.retrieval.num_chunks == 3
    expected_index = wide.index if best == LABELS[1] else narrow.index
    assert settings.index == expected_index
    assert (work / "serving.yaml.before-promote").read_text() == before
    served_runs = [r for r in _client(plan)[0].search_runs([_client(plan)[1].experiment_id])
                   if r.data.tags.get("docent.role") == "served"]
    assert len(served_runs) == 1  # the served baseline was evaluated once, then reused

    unchanged = _docent("--config", str(serving), "experiment", "promote", plan.space.name,
                        "--metric", "mean_prompt_tokens", "--json", cwd=work)
    assert unchanged.returncode == 1 and "already served" in json.loads(unchanged.stdout)["reason"]


def test_bad_spaces_and_settings_are_clear_errors(experiment):
    work, plan, _, _ = experiment
    (work / "bad.yaml").write_text("name: x\ncorpus: orbit\nbase_url: u\neval: eval.jsonl\ngrid: {chunk_sise: [1]}\n")
    bad = _docent("experiment", "run", "--space", str(work / "bad.yaml"), cwd=work)
    assert bad.returncode == 2 and "unknown parameter 'chunk_sise'" in bad.stderr
    unknown_llm = yaml.safe_load((work / "space.yaml").read_text()) | {"fixed": {"llm": "nope"}}
    (work / "llm.yaml").write_text(yaml.safe_dump(unknown_llm))
    refused = _docent("experiment", "run", "--space", str(work / "llm.yaml"), "--dry-run", cwd=work)
    assert refused.returncode == 2 and "llm 'nope' is not configured" in refused.stderr
    no_config = _docent("experiment", "promote", plan.space.name, cwd=work)
    assert no_config.returncode == 2 and "name the serving settings file" in no_config.stderr
    for done in (bad, refused, no_config):
        assert "Traceback" not in done.stderr
    assert ROOT.exists()
