"""`docent calibrate`: fit an index's abstention (when to say "the docs don't cover this").

The work is in evaluation/calibration.py; the model in docent/scope.py.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cli.support import NAMED_INDEX, CountProgress, clear_errors, cli_settings, console
from docent.datasets import EvalSetError
from docent.scope import FEATURES

DEFAULT_IN_SCOPE_LIMIT = 500
DEFAULT_SEED = 0


def calibrate(
    in_scope: Annotated[
        Path, typer.Option(help="questions the docs answer: JSON lines or array of {question, source?} (e.g. a golden set)")
    ],
    out_of_scope: Annotated[
        Path | None, typer.Option(help="questions they don't: {question, category?} rows (default: the set shipped with docent)")
    ] = None,
    index: Annotated[str | None, typer.Option(help="index to calibrate (default: from settings)")] = None,
    limit: Annotated[
        int, typer.Option(min=1, help="in-scope questions sampled (fixed by --seed); questions whose page is not indexed are left out")
    ] = DEFAULT_IN_SCOPE_LIMIT,
    seed: Annotated[int, typer.Option(help="seed of the in-scope sample")] = DEFAULT_SEED,
    target: Annotated[
        float | None, typer.Option(min=0.0, max=0.5, help="share of in-scope questions the threshold may abstain on "
                                   "(default: abstention.max_in_scope_abstained)")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="fit and report, but store nothing")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object for scripts")] = False,
) -> None:
    """Fit when an index abstains: a logistic model over four retrieval signals (best and top-3 similarity, the question's words unknown to the index, and those missing from what was retrieved), with the threshold that abstains on at most --target of the in-scope questions.

    The model is stored with the index; `docent serve` picks it up within serving.index_refresh_s, and cached answers of the index are forgotten. An index never calibrated abstains when no chunk's similarity reaches abstention.min_similarity.
    """
    from docent.cached_answers import forget_index_answers
    from evaluation.calibration import OUT_OF_SCOPE_SET, read_scope_questions, sample
    from evaluation.calibration import calibrate as run_calibration

    with clear_errors(input_errors=(*NAMED_INDEX, EvalSetError)):
        settings = cli_settings(index=index)
        if target is not None:
            settings.abstention.max_in_scope_abstained = target
        inside = sample(read_scope_questions(in_scope, "in-scope set"), limit, seed)
        outside = read_scope_questions(out_of_scope or OUT_OF_SCOPE_SET, "out-of-scope set")
        progress = CountProgress("retrieving", enabled=not as_json)
        try:
            report = asyncio.run(run_calibration(settings, inside, outside, progress, save=not dry_run))
        finally:
            progress.stop()
        if not dry_run:
            forget_index_answers(settings, report.index)
    if as_json:
        print(json.dumps({
            "index": report.index, "stored": not dry_run, "model": report.model.model_dump(),
            "in_scope": report.in_scope, "out_of_scope": report.out_of_scope, "skipped_not_indexed": report.skipped_not_indexed,
            "out_of_scope_abstained_by_category": report.out_of_scope_abstained_by_category,
        }))
        return
    _print_report(report, stored=not dry_run)


def _print_report(report, stored: bool) -> None:
    fitted = report.model.calibration
    table = Table(title=f"abstention of index {report.index}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("in-scope questions", f"{report.in_scope} ({report.skipped_not_indexed} left out: page not indexed)")
    table.add_row("out-of-scope questions", str(report.out_of_scope))
    table.add_row("in-scope abstained", f"{fitted['in_scope_abstained']:.1%} (target ≤ {fitted['target_in_scope_abstained']:.1%})")
    table.add_row("out-of-scope abstained", f"{fitted['out_of_scope_abstained']:.1%}")
    for category, share in report.out_of_scope_abstained_by_category.items():
        table.add_row(f"  {category}", f"{share:.1%}")
    weights = ", ".join(f"{name} {weight:+.2f}" for name, weight in zip(FEATURES, report.model.weights))
    table.add_row("weights", weights)
    table.add_row("threshold", f"{report.model.threshold:.3f}")
    console.print(table)
    console.print(
        "figures on the fitting data; held-out figures: python bench/abstention.py"
        + ("" if stored else "\n[bold]dry run:[/] nothing stored")
    )
