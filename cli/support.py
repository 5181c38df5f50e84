"""What every `docent` command shares: consoles, exit codes, settings and clear errors.

Commands live in `cli.main` and in `docent.commands.*`; both import from here so
that a command module never imports the CLI that registers it.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from docent.errors import DocentError, ExitCode
from docent.settings import Settings, load_settings
from docent.store import IndexNotFound

console = Console()
errors = Console(stderr=True)

USAGE_ERROR = ExitCode.USAGE
RUNTIME_ERROR = ExitCode.RUNTIME
INTERRUPTED = ExitCode.INTERRUPTED


class CliState:
    """Set by the top-level callback: the `--config` file every command's settings start from."""

    config: Path | None = None


def fail(message: str, code: int) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {escape(message)}", highlight=False)  # messages quote paths and YAML: no markup
    return typer.Exit(code)


@contextmanager
def clear_errors(
    interrupted: str = "interrupted; documents written so far are kept, re-run to finish",
    input_errors: tuple[type[DocentError], ...] = (),
):
    """Known failures become one-line messages and exit codes, never tracebacks.

    `input_errors` are failures that, in this command, mean one of its inputs is wrong (exit 2)."""
    try:
        yield
    except DocentError as exc:
        raise fail(exc.message, USAGE_ERROR if isinstance(exc, input_errors) else exc.exit_code) from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise fail(f"invalid settings: {problems}", USAGE_ERROR) from None
    except KeyboardInterrupt:
        raise fail(interrupted, INTERRUPTED) from None


# The eval commands name the index they read as one of their inputs.
NAMED_INDEX: tuple[type[DocentError], ...] = (IndexNotFound,)


def cli_settings(**overrides: Any) -> Settings:
    return load_settings(CliState.config, **overrides)


class CountProgress:
    """A bar of items done, shown from the first report (after the inputs were checked), on stderr."""

    def __init__(self, label: str, enabled: bool = True):
        self.label, self.enabled, self.bar, self.task = label, enabled, None, None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            columns = [TextColumn(self.label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
            self.bar = Progress(*columns, console=errors)
            self.bar.start()
            self.task = self.bar.add_task(self.label, total=total)
        self.bar.update(self.task, completed=done, total=total)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
