"""`docent keys create|list|revoke`: the API keys the gateway accepts (auth_enabled)."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer
from rich.table import Table

from cli.support import clear_errors, cli_settings, console, errors

keys_app = typer.Typer(help="Create, list and revoke the gateway's API keys.", no_args_is_help=True)


async def _with_connection(operation):
    from docent.db import connect

    conn = await connect(cli_settings())
    try:
        return await operation(conn)
    finally:
        await conn.close()


def _run(operation):
    with clear_errors():
        return asyncio.run(_with_connection(operation))


@keys_app.command()
def create(
    name: Annotated[str, typer.Argument(help="who or what uses the key, e.g. slack-bot or docs-widget")],
    scope: Annotated[
        list[str] | None, typer.Option("--scope", help="query (POST /query, /stream) or feedback; repeat for both (default: both)")
    ] = None,
) -> None:
    """Create a key and print it once: only its hash is stored, so it cannot be shown again."""
    from services.gateway.keys import SCOPES, create_key

    key = _run(lambda conn: create_key(conn, name, scope or SCOPES))
    errors.print(f"created key [bold]{name}[/] with scopes {', '.join(sorted(scope or SCOPES))}; store it now, it is not shown again:")
    print(key)


@keys_app.command("list")
def list_(
    all_keys: Annotated[bool, typer.Option("--all", help="include revoked keys")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per key")] = False,
) -> None:
    """The keys by name, with their prefix (the start of the key), scopes and when they were last used."""
    from services.gateway.keys import list_keys

    keys = _run(lambda conn: list_keys(conn, include_revoked=all_keys))
    if as_json:
        for key in keys:
            print(json.dumps({
                "name": key.name, "prefix": key.prefix, "scopes": list(key.scopes), "created_at": _when(key.created_at),
                "last_used_at": _when(key.last_used_at), "revoked_at": _when(key.revoked_at),
            }))
        return
    if not keys:
        console.print("no keys; `docent keys create NAME` makes one")
        return
    table = Table("name", "key starts", "scopes", "created", "last used", "revoked", title="API keys", title_justify="left")
    for key in keys:
        table.add_row(
            key.name, f"dk_{key.prefix}_…", ", ".join(key.scopes), _short(key.created_at),
            _short(key.last_used_at) or "never", _short(key.revoked_at),
        )
    console.print(table)


@keys_app.command()
def revoke(name: Annotated[str, typer.Argument(help="the key's name")]) -> None:
    """Revoke the active key of that name: the gateway answers 403 to it from the next request on."""
    from services.gateway.keys import revoke_key

    key = _run(lambda conn: revoke_key(conn, name))
    console.print(f"revoked key {key.name} (dk_{key.prefix}_…)")


def _when(moment) -> str | None:
    return moment.isoformat(timespec="seconds") if moment else None


def _short(moment) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M") if moment else ""
