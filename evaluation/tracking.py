"""Experiments in MLflow: one experiment per space name, one run per trial.

A run carries the trial's parameters, its aggregate metrics, its responses and evaluation
files as artifacts, and the eval set as a dataset input (its digest is the file's sha256).
The tag `docent.trial_key` identifies the configuration, so a re-run of the experiment
finds its finished trials and does not run them again. With no tracking URI configured
the store is SQLite under `<data_dir>/mlflow`, artifacts beside it.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from docent.errors import DocentError
from docent.settings import Settings
from docent.uris import export_s3_environment

TRIAL_KEY_TAG = "docent.trial_key"
TRIAL_LABEL_TAG = "docent.trial"
ROLE_TAG = "docent.role"  # trial, or served: the baseline `docent experiment promote` compares with
INDEX_TAG = "docent.index"
EVAL_SHA_TAG = "docent.eval_sha256"
EVAL_PATH_TAG = "docent.eval_path"
CONFIGURATION_TAG = "docent.configuration"  # the trial's parameters as JSON, values typed
PROMOTED_TAG = "docent.promoted"
SPACE_TAGS = ("corpus", "base_url", "references", "judge", "limit")  # docent.<name>: what a served run re-uses
FINISHED = "FINISHED"
_MLFLOW_PARAM_CHARS = 6000  # MLflow's limit on a parameter value


class TrackingError(DocentError, RuntimeError):
    """The tracking store is unreachable or holds no such experiment."""


_DATASET_ATTEMPTS = 3  # concurrent trials racing to create the eval set's dataset row


def tracking_uri(settings: Settings) -> str:
    if settings.mlflow_tracking_uri:
        return settings.mlflow_tracking_uri
    folder = settings.data_dir / "mlflow"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}"


def _artifact_location(settings: Settings) -> str | None:
    """Where a new experiment keeps artifacts: `experiment.artifact_location` (e.g. s3://…), else beside a
    default (local) store; a server decides for itself."""
    if settings.experiment.artifact_location:
        return settings.experiment.artifact_location
    return None if settings.mlflow_tracking_uri else (settings.data_dir / "mlflow" / "artifacts").as_uri()


def connect_tracking(settings: Settings):
    """The MLflow module pointed at the store; quiet, because docent prints its own summary."""
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    warnings.filterwarnings("ignore", module="mlflow")
    import logging

    import mlflow

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.ERROR)
    mlflow.set_tracking_uri(tracking_uri(settings))
    export_s3_environment(settings)  # MLflow's S3 artifact store (boto3) then uses docent's endpoint and keys
    return mlflow


def ensure_experiment(settings: Settings, name: str) -> str:
    """The experiment's id, created (with local artifacts under data_dir) if new."""
    mlflow = connect_tracking(settings)
    try:
        experiment = mlflow.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        return mlflow.create_experiment(name, artifact_location=_artifact_location(settings))
    except Exception as exc:
        raise TrackingError(f"MLflow store {tracking_uri(settings)} failed: {exc}") from exc


def experiment_id(settings: Settings, name: str) -> str:
    mlflow = connect_tracking(settings)
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        known = [e.name for e in mlflow.search_experiments() if e.name != "Default"]
        raise TrackingError(f"no experiment {name!r} in {tracking_uri(settings)}; experiments: {', '.join(known) or 'none'}")
    return experiment.experiment_id


@dataclass(frozen=True)
class TrialRun:
    """A run read back from MLflow, as `evaluation.report` takes it (see `as_record`)."""

    experiment: str
    run_id: str
    status: str
    label: str
    key: str
    role: str
    index: str
    configuration: dict[str, Any]
    metrics: dict[str, float]
    tags: dict[str, str]
    artifact_uri: str

    def as_record(self) -> dict[str, Any]:
        # MLflow names allow no brackets: `cost_per_query/gpt-4` is logged, `cost_per_query[gpt-4]` reported.
        metrics = {re.sub(r"^([^/]+)/(.+)$", r"\1[\2]", name): value for name, value in self.metrics.items()}
        return {"experiment": self.experiment, "trial": self.label, "run_id": self.run_id, "status": self.status,
                "params": self.configuration, "metrics": metrics, "index": self.index}


def read_runs(settings: Settings, name: str, role: str | None = "trial") -> list[TrialRun]:
    """Every run of the experiment (of one role; None: all), oldest first."""
    mlflow = connect_tracking(settings)
    runs = mlflow.search_runs(experiment_ids=[experiment_id(settings, name)], output_format="list",
                              order_by=["attributes.start_time ASC"])
    found = [_trial_run(name, run) for run in runs]
    return [r for r in found if role is None or r.role == role]


def _trial_run(experiment: str, run: Any) -> TrialRun:
    tags = dict(run.data.tags)
    return TrialRun(
        experiment=experiment,
        run_id=run.info.run_id,
        status=run.info.status,
        label=tags.get(TRIAL_LABEL_TAG, run.info.run_name or run.info.run_id),
        key=tags.get(TRIAL_KEY_TAG, ""),
        role=tags.get(ROLE_TAG, "trial"),
        index=tags.get(INDEX_TAG, ""),
        configuration=json.loads(tags.get(CONFIGURATION_TAG, "{}")),
        metrics=dict(run.data.metrics),
        tags=tags,
        artifact_uri=run.info.artifact_uri,
    )


def finished_runs(settings: Settings, name: str) -> dict[str, TrialRun]:
    """trial key → its latest finished run, for the trials a re-run can reuse (none for a new experiment)."""
    if connect_tracking(settings).get_experiment_by_name(name) is None:
        return {}
    return {r.key: r for r in read_runs(settings, name, role=None) if r.status == FINISHED and r.key}


def log_trial(
    settings: Settings,
    experiment: str,
    trial: dict[str, Any],
    metrics: dict[str, float],
    artifacts: Iterable[Path],
    eval_set: tuple[Path, str],
) -> str:
    """One finished trial as an MLflow run; returns the run id.

    The run is written once the evaluation is done, so a killed trial leaves no run that
    looks finished; the responses stay in the trial's folder and the next run resumes them.
    """
    mlflow = connect_tracking(settings)
    eval_path, eval_sha = eval_set
    tags = {
        TRIAL_KEY_TAG: trial["key"],
        TRIAL_LABEL_TAG: trial["label"],
        ROLE_TAG: trial.get("role", "trial"),
        INDEX_TAG: trial["index"],
        EVAL_SHA_TAG: eval_sha,
        EVAL_PATH_TAG: str(eval_path),
        CONFIGURATION_TAG: json.dumps(trial["configuration"], sort_keys=True),
    } | {f"docent.{name}": str(trial[name]) for name in SPACE_TAGS if trial.get(name) is not None}
    experiment_id_ = ensure_experiment(settings, experiment)
    with mlflow.start_run(experiment_id=experiment_id_, run_name=trial["label"], tags=tags) as run:
        params = {name: str(value)[:_MLFLOW_PARAM_CHARS] for name, value in trial["configuration"].items()}
        mlflow.log_params(params | {"index": trial["index"]})
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None})
        _log_eval_input(mlflow, _eval_dataset(eval_path, eval_sha))
        for path in artifacts:
            if path.exists():
                mlflow.log_artifact(str(path))
        return run.info.run_id


def _log_eval_input(mlflow, dataset) -> None:
    """Link the eval set to the run. Trials finishing at once may both create its dataset row (SQLite
    answers UNIQUE to the second): trying again links to the row the other one made."""
    for attempt in range(_DATASET_ATTEMPTS):
        try:
            mlflow.log_input(dataset, context="eval")
            return
        except mlflow.exceptions.MlflowException as exc:
            if "UNIQUE constraint" not in str(exc) or attempt + 1 == _DATASET_ATTEMPTS:
                raise


def _eval_dataset(path: Path, sha256: str):
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.sources import LocalArtifactDatasetSource

    return MetaDataset(LocalArtifactDatasetSource(str(path)), name=path.name, digest=sha256[:16])


def tag_run(settings: Settings, run_id: str, key: str, value: str) -> None:
    connect_tracking(settings).MlflowClient().set_tag(run_id, key, value)


def download_artifact(settings: Settings, run: TrialRun, name: str, into: Path) -> Path:
    mlflow = connect_tracking(settings)
    return Path(mlflow.artifacts.download_artifacts(run_id=run.run_id, artifact_path=name, dst_path=str(into)))
