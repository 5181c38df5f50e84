"""`docent experiment run | report | promote`: distributed experiments tracked in MLflow."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cli.support import (
    INTERRUPTED,
    NAMED_INDEX,
    RUNTIME_ERROR,
    USAGE_ERROR,
    CliState,
    CountProgress,
    clear_errors,
    cli_settings,
    console,
    errors,
    fail,
)

experiment_app = typer.Typer(
    help="Run search spaces of configurations as Ray Tune trials tracked in MLflow; compare and promote them.",
    no_args_is_help=True,
)

DEFAULT_REPORT_DIR = Path("experiment-reports")


@experiment_app.command("run")
def run(
    space_file: Annotated[Path, typer.Option("--space", help="search space YAML (name, corpus, base_url, eval, grid/random/sweeps)")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the trials and the indexes they need; run nothing")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object for scripts")] = False,
) -> None:
    """Build the indexes a search space needs, then run each configuration as a Ray Tune trial logged to MLflow.

    A trial answers the eval set in-process and scores it (retrieval, answer similarity, token F1, the judge's quality_score when the space names a judge, cost per query). Re-running the same space reuses its finished trials.
    """
    from evaluation.experiment import base_settings, build_indexes, plan_experiment, run_experiment
    from evaluation.space import load_space

    with clear_errors(input_errors=NAMED_INDEX):
        space = load_space(space_file)
        plan = plan_experiment(space, base_settings(space, CliState.config))
        if dry_run:
            _print_plan(plan, as_json)
            return
        if not as_json:
            console.print(f"experiment [bold]{space.name}[/]: {len(plan.trials)} trials, {len(plan.trials) - len(plan.pending)} "
                          f"already finished; {len(plan.indexes_needed())} index(es) to build or check")
        with console.status("") as status:
            def index_progress(name: str, done: int, total: int) -> None:
                status.update(f"ingest job: index {done + 1}/{total} {name}" if name else "indexes ready")
            reports = build_indexes(plan, index_progress if not as_json else None)
        bar = CountProgress("trials", enabled=not as_json)
        try:
            result = run_experiment(plan, bar)
        except KeyboardInterrupt:
            raise fail("interrupted; finished trials are in MLflow and answers so far in their folders: "
                       "the same command continues", INTERRUPTED) from None
        finally:
            bar.stop()
    summary = {
        "experiment": space.name, "trials": len(plan.trials), "finished": result.finished, "reused": result.reused,
        "failed": result.failed, "seconds": round(result.seconds, 1),
        "indexes": {name: {"chunks_added": r.chunks_added, "seconds": round(r.seconds, 1)} for name, r in reports.items()},
    }
    if as_json:
        print(json.dumps(summary))
    else:
        _print_summary(summary)
        _print_report([space.name], limit=len(plan.trials))
    if result.failed:
        raise typer.Exit(RUNTIME_ERROR)


def _print_plan(plan, as_json: bool) -> None:
    rows = [{"trial": t.label, "index": t.index, "reused_run": t.reused_run, "key": t.key[:16]} for t in plan.trials]
    if as_json:
        print(json.dumps({"experiment": plan.space.name, "trials": rows, "indexes": sorted(plan.indexes_needed())}))
        return
    table = Table("trial", "index", "status", title=f"experiment {plan.space.name} (dry run)", title_justify="left")
    for row in rows:
        table.add_row(row["trial"], row["index"], f"reuses {row['reused_run'][:8]}" if row["reused_run"] else "to run")
    console.print(table)


def _print_summary(summary: dict) -> None:
    for name, built in summary["indexes"].items():
        console.print(f"index {name}: {built['chunks_added']} chunks added in {built['seconds']} s")
    console.print(f"{len(summary['finished'])} trial(s) run, {len(summary['reused'])} reused, "
                  f"{len(summary['failed'])} failed in {summary['seconds']} s")
    for label, error in summary["failed"].items():
        errors.print(f"[red]failed[/] {label}: {error}", highlight=False)


def _finished_trials(names: list[str]) -> list[dict]:
    """The experiments' finished trials as report records, best first."""
    from evaluation.report import sort_trials
    from evaluation.tracking import read_runs

    settings = cli_settings()
    records = [run.as_record() for name in names for run in read_runs(settings, name)]
    return sort_trials([r for r in records if r["status"] == "FINISHED"])


def _print_report(names: list[str], limit: int | None = None) -> None:
    from evaluation.report import trials_table

    finished = _finished_trials(names)
    if finished:
        console.print(trials_table(finished[:limit] if limit else finished))


@experiment_app.command("report")
def report(
    names: Annotated[list[str], typer.Argument(help="experiment name(s)")],
    out: Annotated[Path, typer.Option(help="folder for the plots and trials.csv")] = DEFAULT_REPORT_DIR,
    reference: Annotated[
        Path | None, typer.Option(help="YAML mapping each parameter to (value, retrieval_score) pairs, drawn beside the sweeps")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object for scripts")] = False,
) -> None:
    """A table of finished trials sorted by quality, then retrieval score, and plots written to files.

    Plots: quality vs retrieval per experiment, parallel coordinates of parameters and metrics (HTML), cost per query vs quality (log scale), and each one-parameter sweep.
    """
    from evaluation.report import trials_table, write_plots

    with clear_errors(input_errors=NAMED_INDEX):
        finished = _finished_trials(names)
    if not finished:
        raise fail(f"no finished trials in {', '.join(names)}: run `docent experiment run --space FILE` first", USAGE_ERROR)
    written = write_plots(finished, out, _reference_figures(reference) if reference else None)
    if as_json:
        print(json.dumps({"trials": finished, "files": [str(p) for p in written]}, default=str))
        return
    console.print(trials_table(finished))
    console.print("wrote " + ", ".join(str(p) for p in written), highlight=False)


def _reference_figures(path: Path) -> dict[str, list[tuple[float, float]]]:
    import yaml

    if not path.is_file():
        raise fail(f"reference figures not found: {path}", USAGE_ERROR)
    try:
        figures = yaml.safe_load(path.read_text(encoding="utf-8"))
        return {name: [(float(value), float(score)) for value, score in points] for name, points in figures.items()}
    except (yaml.YAMLError, AttributeError, TypeError, ValueError):
        raise fail(f"{path}: expected parameter: [[value, retrieval_score], …]", USAGE_ERROR) from None


@experiment_app.command("promote")
def promote(
    name: Annotated[str, typer.Argument(help="experiment whose best trial may be promoted")],
    metric: Annotated[str, typer.Option(help="metric deciding the best trial (e.g. retrieval_score, answer_similarity)")] = "quality_score",
    margin: Annotated[float, typer.Option(min=0, help="how much the best trial must beat the served configuration by")] = 0.0,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="decide and print, change nothing")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object for scripts")] = False,
) -> None:
    """Write the best trial's configuration into the serving settings file (`docent --config FILE`) only if it beats the served configuration on the same eval set by the margin.

    The served configuration is evaluated like a trial (or its earlier run reused) and logged to the experiment with role `served`. Otherwise nothing changes, and the command says why (exit 1).
    """
    from evaluation.promote import apply, decide

    settings_file = CliState.config
    if settings_file is None:
        raise fail("name the serving settings file: `docent --config SETTINGS.yaml experiment promote NAME`", USAGE_ERROR)
    if not settings_file.is_file():
        raise fail(f"settings file not found: {settings_file}", USAGE_ERROR)
    with clear_errors(input_errors=NAMED_INDEX):
        settings = cli_settings()
        runs_dir = (settings.experiment.runs_dir or settings.data_dir / "experiments").expanduser() / name
        with console.status("evaluating the served configuration on the experiment's eval set…"):
            decision = decide(settings_file, name, metric, margin, runs_dir)
        backup = apply(decision, settings_file) if decision.promoted and not dry_run else None
    changes = {path: {"served": old, "promoted": new} for path, (old, new) in decision.changes.items()}
    if as_json:
        print(json.dumps({"promoted": backup is not None, "reason": decision.reason, "metric": metric,
                          "best": decision.best.label, "served": decision.served, "candidate": decision.candidate,
                          "changes": changes, "backup": str(backup) if backup else None}, default=str))
    else:
        _print_decision(decision, changes, backup, dry_run)
    if not decision.promoted:
        raise typer.Exit(RUNTIME_ERROR)


def _print_decision(decision, changes: dict, backup: Path | None, dry_run: bool) -> None:
    table = Table("setting", "served", "best trial", title=f"{decision.metric}: {decision.best.label}", title_justify="left")
    for path, values in changes.items():
        table.add_row(path, str(values["served"]), str(values["promoted"]))
    if changes:
        console.print(table)
    if backup is not None:
        console.print(f"[green]promoted[/]: {decision.reason}; previous settings kept in {backup}", highlight=False)
    elif decision.promoted and dry_run:
        console.print(f"would promote (dry run): {decision.reason}", highlight=False)
    else:
        console.print(f"[yellow]not promoted[/]: {decision.reason}", highlight=False)
