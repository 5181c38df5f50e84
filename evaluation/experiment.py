"""Run an experiment: every configuration of a search space as a Ray Tune trial, tracked in MLflow.

1. Plan: the space's configurations, each with its settings, index name and trial key.
   Trials whose key already has a finished MLflow run are reused, not run.
2. Index: each chunking+embedding pair the remaining trials need is built once by the
   ingest job (incremental: an index that is up to date costs a scan).
3. Tune: one trial per configuration (`tune.grid_search` over the planned list, so grid,
   random and sweep spaces run alike), resources per trial from `experiment` settings.
   A trial answers the eval set in-process (`evaluation.runner.run_eval`, resumable in
   the trial's folder), adds cost figures, logs the run to MLflow and reports its metrics.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray import tune

from docent.settings import Settings, load_settings
from docent.uris import fetch
from evaluation.runner import (
    CONFIG_FILE,
    EVALUATION_FILE,
    JUDGEMENTS_FILE,
    RESPONSES_FILE,
    EvalSet,
    load_references,
    open_eval_set,
)
from evaluation.space import (
    Configuration,
    ExperimentSpace,
    SpaceError,
    check_llms,
    digest,
    trial_label,
    trial_settings,
)
from evaluation.tracking import FINISHED, ensure_experiment, finished_runs, log_trial

# Settings that say where things run, not what the answers are: left out of a trial's key.
_PLACEMENT = {"data_dir", "database_url", "redis_url", "ray_address", "mlflow_tracking_uri", "serving", "experiment"}


@dataclass
class Trial:
    configuration: Configuration
    label: str
    settings: Settings
    key: str
    reused_run: str | None = None  # the finished MLflow run standing in for this trial

    @property
    def index(self) -> str:
        return self.settings.index_name


@dataclass
class ExperimentPlan:
    space: ExperimentSpace
    base: Settings
    eval_set: EvalSet
    references_sha: str | None
    trials: list[Trial]
    runs_dir: Path

    @property
    def pending(self) -> list[Trial]:
        return [t for t in self.trials if t.reused_run is None]

    def indexes_needed(self) -> dict[str, Settings]:
        """index name → the settings that build it, for the pending trials."""
        needed: dict[str, Settings] = {}
        for trial in self.pending:
            needed.setdefault(trial.index, trial.settings)
        return needed


@dataclass
class ExperimentResult:
    plan: ExperimentPlan
    finished: list[str] = field(default_factory=list)  # labels
    reused: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # label → error
    seconds: float = 0.0


def base_settings(space: ExperimentSpace, cli_config: Path | None) -> Settings:
    """The settings every trial starts from: the space's file (else the CLI's), plus its overrides."""
    return load_settings(space.config or cli_config, **space.settings)


def plan_experiment(space: ExperimentSpace, base: Settings) -> ExperimentPlan:
    eval_set = open_eval_set(fetch(space.eval, base))  # a path, or an s3:// object read through the cache
    references_sha = digest(load_references(fetch(space.references, base))) if space.references else None
    configurations = space.configurations()
    check_llms(configurations, base, space.judge)
    runs_dir = (base.experiment.runs_dir or base.data_dir / "experiments").expanduser() / space.name
    finished = finished_runs(base, space.name)
    trials = []
    for configuration in configurations:
        try:
            settings = trial_settings(base, configuration)
        except ValueError as exc:
            raise SpaceError(f"configuration {configuration} is not valid: {exc}") from None
        settings = settings.model_copy(update={"index": space.index_name(settings)})
        key = trial_key(space, settings, configuration, eval_set, references_sha)
        reused = finished.get(key)
        trials.append(Trial(configuration, trial_label(configuration, list(space.varied)), settings, key,
                            reused.run_id if reused and reused.status == FINISHED else None))
    return ExperimentPlan(space, base, eval_set, references_sha, trials, runs_dir)


def trial_key(
    space: ExperimentSpace, settings: Settings, configuration: Configuration, eval_set: EvalSet, references_sha: str | None
) -> str:
    """What decides a trial's results: its settings and parameters, the corpus, the questions and the judge."""
    return digest({
        "settings": settings.model_dump(mode="json", exclude=_PLACEMENT),
        "configuration": configuration,
        "corpus": space.corpus,
        "base_url": space.base_url,
        "eval_sha256": eval_set.sha256,
        "references": references_sha,
        "limit": space.limit,
        "judge": space.judge,
        "models": {kind: _file_digest(settings.model_artifact(kind)) for kind in ("reranker", "router")},
    })


def _file_digest(path: Path) -> str | None:
    """A trained model's checksum: retraining it changes the trials that use it."""
    if not path.is_file():
        return None
    stat = path.stat()
    return _checksum(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _checksum(path: Path, mtime_ns: int, size: int) -> str:
    """Read once per version of the file, not once per trial of a plan."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


IndexProgress = Callable[[str, int, int], None]  # (index name, built so far, indexes needed)


def build_indexes(plan: ExperimentPlan, progress: IndexProgress | None = None) -> dict[str, Any]:
    """Run the ingest job once per index the pending trials need; index name → its ingest report."""
    from ingest.pipeline import run_ingest

    needed = plan.indexes_needed()
    reports = {}
    for number, (name, settings) in enumerate(sorted(needed.items()), start=1):
        if progress:
            progress(name, number - 1, len(needed))
        reports[name] = run_ingest(plan.space.corpus, settings, base_url=plan.space.base_url)  # a folder or s3://
    if progress and needed:
        progress("", len(needed), len(needed))
    return reports


def trial_payload(plan: ExperimentPlan, trial: Trial) -> dict[str, Any]:
    """Everything a Tune worker needs to run one trial, as plain data."""
    space = plan.space
    return {
        "experiment": space.name,
        "corpus": space.corpus,
        "base_url": space.base_url,
        "key": trial.key,
        "label": trial.label,
        "index": trial.index,
        "configuration": trial.configuration,
        "settings": trial.settings.model_dump(mode="json"),
        "eval": str(space.eval),
        "references": str(space.references) if space.references else None,
        "limit": space.limit,
        "judge": space.judge,
        "out_dir": str(plan.runs_dir / trial.key[:16]),
    }


def run_trial(config: dict[str, Any]) -> None:
    """Tune's trainable: evaluate one configuration, log it to MLflow, report its metrics."""
    payload = config["trial"]
    metrics = evaluate_trial(payload)
    tune.report({k: v for k, v in metrics.items() if v is not None} | {"done": True})


def evaluate_trial(payload: dict[str, Any]) -> dict[str, float | None]:
    """Answer, score and log one trial; its metrics."""
    from evaluation.costs import cost_metrics, count_tokens
    from evaluation.judge import Judge
    from evaluation.runner import run_eval

    settings = Settings.model_validate(payload["settings"])
    # s3:// inputs travel as URIs: each worker reads them through its own cache, no shared folder needed.
    eval_set = open_eval_set(fetch(payload["eval"], settings))
    references = load_references(fetch(payload["references"], settings)) if payload["references"] else {}
    llms = {m.name: m for m in settings.generation.llms}
    out_dir = Path(payload["out_dir"])

    async def evaluate():
        judge = Judge(llms[payload["judge"]], settings.evaluation.judge_attempts) if payload["judge"] else None
        try:
            return await run_eval(settings, eval_set, references, out_dir, settings.evaluation.concurrency,
                                  payload["limit"], llm=payload["configuration"].get("llm"), judge=judge)
        finally:
            if judge is not None:
                await judge.aclose()

    report = asyncio.run(evaluate())
    rows = json.loads(report.evaluation.read_text(encoding="utf-8"))["rows"]
    metrics = flatten_aggregates(report.aggregates) | cost_metrics(rows, settings, count_tokens(rows, settings))
    files = [out_dir / name for name in (RESPONSES_FILE, EVALUATION_FILE, CONFIG_FILE, JUDGEMENTS_FILE)]
    log_trial(settings, payload["experiment"], payload, metrics, files, (eval_set.path, eval_set.sha256))
    return metrics


_SUBSET_SUFFIX = {"all": "", "in_corpus": "_in_corpus"}


def flatten_aggregates(aggregates: dict[str, dict[str, Any] | None]) -> dict[str, float | None]:
    """`{all: {retrieval_score: …}, in_corpus: {…}}` → `retrieval_score`, `retrieval_score_in_corpus`, …"""
    flat: dict[str, float | None] = {}
    for subset, suffix in _SUBSET_SUFFIX.items():
        for name, value in (aggregates.get(subset) or {}).items():
            if isinstance(value, bool) or not isinstance(value, int | float | type(None)):
                continue
            flat[name.replace("@", "_at_") + suffix] = value
    return flat


TrialProgress = Callable[[int, int], None]  # (trials done, trials to run)


def run_experiment(plan: ExperimentPlan, progress: TrialProgress | None = None) -> ExperimentResult:
    """Run the plan's pending trials with Ray Tune (its indexes must exist: `build_indexes`)."""
    from docent.ray_runtime import ensure_ray

    started = time.perf_counter()
    result = ExperimentResult(plan, reused=[t.label for t in plan.trials if t.reused_run])
    pending = plan.pending
    if not pending:
        return result
    ensure_experiment(plan.base, plan.space.name)  # created once here, not raced by the trials
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0, Tune prints nothing: the CLI draws the bar
    ensure_ray(plan.base)
    resources = {"cpu": plan.base.experiment.trial_cpus, "gpu": plan.base.experiment.trial_gpus}
    tuner = tune.Tuner(
        tune.with_resources(run_trial, resources),
        param_space={"trial": tune.grid_search([trial_payload(plan, t) for t in pending])},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=plan.base.experiment.max_concurrent_trials,
            trial_name_creator=_trial_name,
            trial_dirname_creator=_trial_name,
        ),
        run_config=tune.RunConfig(
            name=f"{plan.space.name}-{time.strftime('%Y%m%d-%H%M%S')}",
            storage_path=str((plan.runs_dir / "tune").resolve()),
            verbose=0,
            callbacks=[TrialCounter(progress, len(pending))] if progress else None,
            log_to_file=True,
        ),
    )
    outcomes = tuner.fit()
    for outcome in outcomes:
        label = outcome.config["trial"]["label"] if outcome.config else "?"
        if outcome.error is not None:
            result.failed[label] = _last_line(outcome.error)
        else:
            result.finished.append(label)
    result.seconds = time.perf_counter() - started
    return result


def _trial_name(trial: Any) -> str:
    """Tune names trials after their config by default; ours holds whole settings."""
    return f"trial-{trial.config['trial']['key'][:16]}"


def _last_line(error: BaseException) -> str:
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


class TrialCounter(tune.Callback):
    """Reports finished (or failed) trials to the CLI's bar."""

    def __init__(self, progress: TrialProgress, total: int):
        self.progress, self.total, self.done = progress, total, 0
        progress(0, total)

    def _one_more(self) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total)

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks with the experiment's state; a live progress bar stays behind.
        return {"progress": None, "total": self.total, "done": self.done}

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._one_more()

    def on_trial_error(self, iteration, trials, trial, **info):
        self._one_more()
