"""The `docent` command line: the app, its global options, and every command group registered.

Each group lives in its own module (`cli/indexes.py`, `cli/serving.py`, `cli/train.py`,
`cli/evaluate.py`, `cli/experiment.py`, …); what they share is `cli/support.py`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from cli import calibrate, database, evaluate, experiment, finetune, flywheel, indexes, keys, serving, slack, train
from cli.support import CliState

app = typer.Typer(
    help="docent: question answering over documentation. Ingest docs, inspect indexes, search, serve and ask; evaluate, experiment and fine-tune.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(asked: bool) -> None:
    if asked:
        from importlib.metadata import version

        print(f"docent {version('docent')}")
        raise typer.Exit()


@app.callback()
def main(
    config: Annotated[
        Path | None, typer.Option(
            "--config", "-c", metavar="SETTINGS.yaml", envvar="DOCENT_CONFIG",
            help="docent's settings file (YAML; also: DOCENT_CONFIG); `docent serve` takes its Serve config as --serve-config",
        )
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="print docent's version and exit")
    ] = False,
) -> None:
    CliState.config = config


app.command()(indexes.ingest)
app.command()(indexes.reembed)
app.command()(indexes.indexes)
app.command("drop-index")(indexes.drop_index)
app.command()(indexes.search)
app.command()(calibrate.calibrate)
app.command()(serving.serve)
app.command()(serving.query)
app.add_typer(train.train_app, name="train")
app.add_typer(evaluate.eval_app, name="eval")
app.add_typer(experiment.experiment_app, name="experiment")
app.add_typer(finetune.finetune_app, name="finetune")
app.add_typer(flywheel.flywheel_app, name="flywheel")
app.add_typer(keys.keys_app, name="keys")
app.add_typer(database.db_app, name="db")
app.command("slack")(slack.slack)


def run() -> None:
    try:
        app()
    except BrokenPipeError:
        sys.exit(0)
