"""Eval-gated rollout: serve an experiment's best configuration only if it beats what is served now.

The served configuration is evaluated on the same eval set (and the same LLM, when the
experiment fixed one), exactly as a trial is, and logged to the experiment as a run with
role `served`; an earlier such run with the same key is reused. The best trial's
parameters are written into the serving settings file only when its metric exceeds the
served one by at least the margin. Otherwise nothing changes and the decision says why.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from docent.errors import UsageError
from docent.settings import Settings, load_settings
from docent.uris import fetch, is_remote
from evaluation.experiment import ExperimentPlan, Trial, evaluate_trial, trial_key, trial_payload
from evaluation.runner import load_references, open_eval_set
from evaluation.space import PARAMETERS, ExperimentSpace, digest
from evaluation.tracking import (
    EVAL_PATH_TAG,
    EVAL_SHA_TAG,
    PROMOTED_TAG,
    TrackingError,
    TrialRun,
    finished_runs,
    read_runs,
    tag_run,
)


class PromotionError(UsageError, ValueError):
    """Promotion cannot even be decided (no finished trials, no such metric, a changed eval set)."""


@dataclass(frozen=True)
class Decision:
    promoted: bool
    reason: str
    metric: str
    best: TrialRun
    served: float
    candidate: float
    changes: dict[str, tuple[Any, Any]]  # settings path → (served value, promoted value)


def best_trial(runs: list[TrialRun], metric: str) -> TrialRun:
    scored = [r for r in runs if r.status == "FINISHED" and r.metrics.get(metric) is not None]
    if not scored:
        known = sorted({m for r in runs for m in r.metrics})
        raise PromotionError(f"no finished trial has {metric!r}; metrics: {', '.join(known) or 'none'}")
    return max(scored, key=lambda r: r.metrics[metric])


def served_space(best: TrialRun, experiment: str, serving: Settings) -> ExperimentSpace:
    """The space a served-configuration run belongs to: the best trial's corpus, eval set and judge."""
    eval_source = best.tags[EVAL_PATH_TAG]  # a path, or an s3:// URI
    if not is_remote(eval_source) and not Path(eval_source).is_file():
        raise PromotionError(f"the experiment's eval set {eval_source} is gone: cannot compare on the same questions")
    if open_eval_set(fetch(eval_source, serving)).sha256 != best.tags[EVAL_SHA_TAG]:
        raise PromotionError(f"{eval_source} changed since the experiment ran: re-run it, then promote")
    tags = best.tags
    references = tags.get("docent.references")
    if references and not is_remote(references) and not Path(references).is_file():
        raise PromotionError(f"the experiment's references {references} are gone: cannot compare on the same answers")
    return ExperimentSpace(
        name=experiment, corpus=tags.get("docent.corpus", ""), base_url=tags.get("docent.base_url", ""),
        eval=eval_source, references=references or None, judge=tags.get("docent.judge"),
        limit=int(tags["docent.limit"]) if tags.get("docent.limit") else None,
        grid={"num_chunks": [serving.retrieval.num_chunks]},  # what a space needs; the served run varies nothing
    )


def evaluate_served(serving: Settings, experiment: str, best: TrialRun, runs_dir: Path) -> tuple[dict[str, float], bool]:
    """The served configuration's metrics, and whether an earlier served run was reused."""
    space = served_space(best, experiment, serving)
    eval_set = open_eval_set(fetch(space.eval, serving))
    references_sha = digest(load_references(fetch(space.references, serving))) if space.references else None
    configuration = {"llm": best.configuration["llm"]} if "llm" in best.configuration else {}
    key = trial_key(space, serving, configuration, eval_set, references_sha)
    reused = finished_runs(serving, experiment).get(key)
    if reused is not None:
        return reused.metrics, True
    trial = Trial(configuration, "served", serving, key)
    plan = ExperimentPlan(space, serving, eval_set, references_sha, [trial], runs_dir)
    return evaluate_trial(trial_payload(plan, trial) | {"role": "served"}), False


def promoted_changes(best: TrialRun, serving: Settings) -> dict[str, tuple[Any, Any]]:
    """settings path → (served, promoted) for each of the best trial's parameters that differs, and the index."""
    served = serving.model_dump(mode="json")
    changes: dict[str, tuple[Any, Any]] = {}
    for name, value in best.configuration.items():
        path = PARAMETERS[name].setting
        if path == ("generation", "llm"):
            continue  # the router chooses per question; an experiment's fixed LLM is not a setting
        current = served
        for part in path:
            current = current.get(part) if isinstance(current, dict) else None
        if current != value:
            changes[".".join(path)] = (current, value)
    if best.index and best.index != serving.index_name:
        changes["index"] = (serving.index_name, best.index)
    return changes


def write_settings(settings_file: Path, changes: dict[str, tuple[Any, Any]]) -> Path:
    """Apply the changes to the YAML file (a copy of the old one is kept beside it); the backup's path."""
    document = yaml.safe_load(settings_file.read_text(encoding="utf-8")) or {}
    for dotted, (_, value) in changes.items():
        *sections, key = dotted.split(".")
        target = document
        for section in sections:
            target = target.setdefault(section, {})
        target[key] = value
    backup = settings_file.with_name(settings_file.name + ".before-promote")
    shutil.copy2(settings_file, backup)
    settings_file.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return backup


def decide(settings_file: Path, experiment: str, metric: str, margin: float, runs_dir: Path) -> Decision:
    serving = load_settings(settings_file)
    try:
        runs = read_runs(serving, experiment)
    except TrackingError as exc:
        raise PromotionError(str(exc)) from None
    best = best_trial(runs, metric)
    served_metrics, _ = evaluate_served(serving, experiment, best, runs_dir)
    served, candidate = served_metrics.get(metric), best.metrics[metric]
    if served is None:
        raise PromotionError(f"the served configuration has no {metric!r} (a judge metric needs the experiment's judge)")
    changes = promoted_changes(best, serving)
    if not changes:
        return Decision(False, "the best trial is the configuration already served", metric, best, served, candidate, {})
    if candidate - served < margin:
        reason = (f"best trial {best.label!r} scores {candidate:.4f} against {served:.4f} served: "
                  f"{candidate - served:+.4f} is below the margin {margin}")
        return Decision(False, reason, metric, best, served, candidate, changes)
    return Decision(True, f"{candidate:.4f} against {served:.4f} served ({candidate - served:+.4f} ≥ {margin})",
                    metric, best, served, candidate, changes)


def apply(decision: Decision, settings_file: Path) -> Path:
    backup = write_settings(settings_file, decision.changes)
    tag_run(load_settings(settings_file), decision.best.run_id, PROMOTED_TAG, str(settings_file))
    return backup
