"""API keys: created and revoked by operators, checked on every request.

A key is `dk_<prefix>_<secret>`. Only its sha256 is stored; the prefix finds the row
and is what listings show. The hash comparison is constant-time, and a prefix that
finds no row is still compared against a dummy hash, so timing tells nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from docent.errors import UsageError

SCOPES = ("query", "feedback")  # query: /query and /stream; feedback: /feedback
KEY_PREFIX = "dk"
_PREFIX_BYTES = 4  # 8 hex characters: enough to find a row, too few to guess a key
_SECRET_BYTES = 32
_LAST_USED_RESOLUTION_S = 60  # last_used_at is kept to the minute: a write per request would cost more than it tells
_DUMMY_HASH = hashlib.sha256(b"no such key").hexdigest()


class ApiKeyError(UsageError, ValueError):
    """An operator's mistake with keys (a duplicate name, an unknown scope or key)."""


@dataclass(frozen=True)
class ApiKey:
    name: str
    prefix: str
    scopes: tuple[str, ...]
    created_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _prefix_of(key: str) -> str | None:
    parts = key.split("_", 2)  # the secret itself may hold underscores
    return parts[1] if len(parts) == 3 and parts[0] == KEY_PREFIX and parts[1] and parts[2] else None


def _api_key(row: asyncpg.Record) -> ApiKey:
    return ApiKey(row["name"], row["prefix"], tuple(row["scopes"]), row["created_at"], row["revoked_at"], row["last_used_at"])


def _check_scopes(scopes: list[str]) -> list[str]:
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise ApiKeyError(f"unknown scope {', '.join(unknown)}; scopes are: {', '.join(SCOPES)}")
    if not scopes:
        raise ApiKeyError(f"a key needs at least one scope: {', '.join(SCOPES)}")
    return sorted(set(scopes))


async def create_key(conn: asyncpg.Connection, name: str, scopes: list[str] | tuple[str, ...] = SCOPES) -> str:
    """A new key for `name`, returned once; only its hash is kept."""
    if not name.strip():
        raise ApiKeyError("a key needs a name")
    scopes = _check_scopes(list(scopes))
    while True:  # a prefix collision is rare (1 in 4 billion per key) but must not fail the command
        prefix = secrets.token_hex(_PREFIX_BYTES)
        key = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(_SECRET_BYTES)}"
        try:
            await conn.execute(
                "INSERT INTO api_keys (name, prefix, key_hash, scopes) VALUES ($1, $2, $3, $4)",
                name, prefix, hash_key(key), scopes,
            )
            return key
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name == "api_keys_active_name":
                raise ApiKeyError(f"a key named {name!r} exists; revoke it first or choose another name") from None


async def list_keys(conn: asyncpg.Connection, include_revoked: bool = False) -> list[ApiKey]:
    rows = await conn.fetch(
        "SELECT * FROM api_keys WHERE $1 OR revoked_at IS NULL ORDER BY name, created_at", include_revoked
    )
    return [_api_key(r) for r in rows]


async def revoke_key(conn: asyncpg.Connection, name: str) -> ApiKey:
    row = await conn.fetchrow(
        "UPDATE api_keys SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL RETURNING *", name
    )
    if row is None:
        raise ApiKeyError(f"no active key named {name!r}; `docent keys list` shows them")
    return _api_key(row)


async def authenticate(conn: asyncpg.Connection, key: str) -> ApiKey | None:
    """The key's record (revoked ones included: the caller answers 403), or None for no such key."""
    prefix = _prefix_of(key)
    row = await conn.fetchrow("SELECT * FROM api_keys WHERE prefix = $1", prefix) if prefix else None
    stored = row["key_hash"] if row else _DUMMY_HASH
    if not hmac.compare_digest(hash_key(key), stored) or row is None:
        return None
    if row["revoked_at"] is None and _stale(row["last_used_at"]):
        await conn.execute("UPDATE api_keys SET last_used_at = now() WHERE id = $1", row["id"])
    return _api_key(row)


def _stale(last_used: datetime | None) -> bool:
    if last_used is None:
        return True
    return (datetime.now(last_used.tzinfo) - last_used).total_seconds() > _LAST_USED_RESOLUTION_S
