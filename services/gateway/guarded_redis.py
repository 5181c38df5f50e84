"""Redis on the request path: every call bounded in time, and a failure remembered.

After a failure, calls fail at once (`RedisDown`) for `redis_retry_s` instead of each
request waiting out a timeout; then one call is let through to see whether Redis is back.
A failure also empties the connection pool, and a connection found closed is replaced
once within its call: connections pooled before an outage would otherwise fail one by
one after Redis is back (each a 503 with `redis_failure: closed`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from docent.errors import Unavailable
from docent.settings import GatewaySettings

log = logging.getLogger(__name__)
T = TypeVar("T")
_RECONNECTS = 1  # a pooled connection that Redis closed meanwhile is replaced once, within the call


class RedisDown(Unavailable, RuntimeError):
    """Redis could not be used just now; the message says why."""


class GuardedRedis:
    def __init__(self, url: str, settings: GatewaySettings, on_failure: Callable[[], None] = lambda: None):
        self.client = aioredis.Redis.from_url(
            url, socket_timeout=settings.redis_timeout_s, socket_connect_timeout=settings.redis_timeout_s,
            retry=Retry(NoBackoff(), _RECONNECTS), retry_on_error=[RedisConnectionError],
        )
        self.timeout_s, self.retry_s = settings.redis_timeout_s, settings.redis_retry_s
        self.prefix = settings.key_prefix
        self._failed_at: float | None = None
        self._failure = ""
        self._on_failure = on_failure

    @property
    def problem(self) -> str | None:
        """Why Redis is not being used, while it is not."""
        return self._failure if self._failed_at is not None else None

    async def call(self, operation: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
        if self._failed_at is not None and time.monotonic() - self._failed_at < self.retry_s:
            raise RedisDown(self._failure)
        try:
            result = await asyncio.wait_for(operation(self.client), self.timeout_s)
        except (TimeoutError, RedisError, OSError) as exc:
            self._record_failure(exc)
            await self.client.connection_pool.disconnect()
            raise RedisDown(self._failure) from exc
        if self._failed_at is not None:
            log.warning("Redis is reachable again")
            self._failed_at = None
        return result

    def _record_failure(self, exc: BaseException) -> None:
        if self._failed_at is None:
            log.warning("Redis unavailable, retrying in %.0f s: %s", self.retry_s, exc)
        self._failed_at = time.monotonic()
        self._failure = f"Redis unavailable: {type(exc).__name__} {exc}".strip()
        self._on_failure()

    async def ping(self) -> str | None:
        """None when Redis answers now (the failure memory is bypassed: readiness wants the truth)."""
        self._failed_at = None
        try:
            await self.call(lambda r: r.ping())
        except RedisDown as exc:
            return str(exc)
        return None

    async def aclose(self) -> None:
        await self.client.aclose()
