"""`docent db status|stop`: the embedded PostgreSQL docent starts when no DATABASE_URL is set."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from cli.support import clear_errors, cli_settings, console

db_app = typer.Typer(
    help="The embedded PostgreSQL (used when DATABASE_URL is not set): its status, and stopping it.", no_args_is_help=True
)


@db_app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="one JSON object for scripts")] = False) -> None:
    """Which database docent uses, and whether the embedded one runs (nothing is started)."""
    from docent.db import embedded_status

    with clear_errors():
        settings = cli_settings()
    pgdata = settings.data_dir / "postgres"
    if settings.database_url:
        found = {"embedded": False, "database_url": _without_password(settings.database_url)}
    else:
        embedded = embedded_status(pgdata)
        found = {
            "embedded": True, "data_dir": str(embedded.pgdata), "initialised": embedded.initialised,
            "running": embedded.pid is not None, "pid": embedded.pid, "socket_dir": embedded.socket_dir, "port": embedded.port,
        }
    if as_json:
        print(json.dumps(found))
    elif not found["embedded"]:
        console.print(f"docent uses DATABASE_URL ({found['database_url']}); no embedded PostgreSQL is involved", highlight=False)
    elif found["running"]:
        console.print(
            f"embedded PostgreSQL [green]running[/] (pid {found['pid']}) on {found['data_dir']}, "
            f"socket in {found['socket_dir']}; stop it with `docent db stop`", highlight=False,
        )
    else:
        state = "stopped" if found["initialised"] else "not created yet"
        console.print(f"embedded PostgreSQL {state} ({found['data_dir']}); any docent command starts it", highlight=False)


@db_app.command()
def stop() -> None:
    """Stop the embedded PostgreSQL (cleanly: nothing is lost); the next docent command starts it again.

    Stop `docent serve` first: it would start the database again itself."""
    from docent.db import stop_embedded

    with clear_errors():
        settings = cli_settings()
        if settings.database_url:
            console.print("docent uses DATABASE_URL: that database is yours to stop; nothing done")
            return
        stopped = stop_embedded(settings.data_dir / "postgres")
    console.print("embedded PostgreSQL stopped" if stopped else "embedded PostgreSQL was not running")


def _without_password(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))
