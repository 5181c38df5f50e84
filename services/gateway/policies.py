"""What the gateway enforces around the pipeline: API keys, rate limits, the response cache
and the answer log. One `GatewayPolicies` per gateway replica (or in-process app).

Redis holds limits and cache when `redis_url` is set, shared by every replica; without
it both live in this process. When Redis fails, `gateway.redis_failure` decides: `open`
answers without cache and limits, `closed` refuses with 503. /readyz reports either.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass

from fastapi import Request

from docent.answers import AnswerStore, Database
from docent.settings import Settings
from docent.types import Answer, QueryRequest, RedisFailure
from services.gateway.cache import LocalAnswerCache, RedisAnswerCache, cache_key, configuration_fingerprint
from services.gateway.errors import ServiceError
from services.gateway.guarded_redis import GuardedRedis, RedisDown
from services.gateway.keys import ApiKey, authenticate
from services.gateway.limits import LocalRateLimiter, RedisRateLimiter
from services.gateway.metrics import GatewayMetrics

log = logging.getLogger(__name__)
BEARER = "bearer "


@dataclass(frozen=True)
class Caller:
    """Who is asking: their key (None when auth is off) and their network address."""

    key: ApiKey | None
    address: str

    @property
    def key_name(self) -> str | None:
        return self.key.name if self.key else None

    @property
    def identity(self) -> str:
        """What rate limits count by."""
        return f"key:{self.key.name}" if self.key else f"address:{self.address}"


@dataclass
class CacheLookup:
    index: str
    key: str
    answer: Answer | None


class GatewayPolicies:
    def __init__(self, settings: Settings, metrics: GatewayMetrics):
        self.settings, self.metrics = settings, metrics
        gateway = settings.gateway
        self.redis = GuardedRedis(settings.redis_url, gateway, metrics.redis_errors.inc) if settings.redis_url else None
        self.limiter = (
            RedisRateLimiter(self.redis, gateway.rate_limit) if self.redis else LocalRateLimiter(gateway.rate_limit)
        )
        self.cache = RedisAnswerCache(self.redis, gateway.cache) if self.redis else LocalAnswerCache(gateway.cache)
        self.database = Database(settings)
        self.answers = AnswerStore(self.database, gateway.answer_retention_days)
        self.fingerprint = configuration_fingerprint(settings)

    # --- keys -------------------------------------------------------------------------

    async def authorize(self, request: Request, scope: str) -> Caller:
        address = request.client.host if request.client else "unknown"
        if not self.settings.auth_enabled:
            return Caller(None, address)
        header = request.headers.get("authorization", "")
        if not header.lower().startswith(BEARER) or not header[len(BEARER):].strip():
            raise _unauthorized("an API key is required: send `Authorization: Bearer KEY` (`docent keys create NAME` makes one)")
        async with self.database.connection() as conn:
            key = await authenticate(conn, header[len(BEARER):].strip())
        if key is None:
            raise _unauthorized("unknown API key")
        if key.revoked:
            raise ServiceError(403, f"the API key {key.name!r} was revoked")
        if scope not in key.scopes:
            raise ServiceError(403, f"the API key {key.name!r} may not use {scope} (its scopes: {', '.join(key.scopes)})")
        return Caller(key, address)

    # --- limits -----------------------------------------------------------------------

    async def limit(self, caller: Caller, scope: str = "query") -> None:
        """The caller's requests of `scope` (query, feedback) counted in a window of their own."""
        if not self.settings.gateway.rate_limit.enabled:
            return
        try:
            decision = await self.limiter.check(caller.identity if scope == "query" else f"{caller.identity}:{scope}")
        except RedisDown as exc:
            self._redis_failed(exc, "rate limits")
            return
        if not decision.allowed:
            self.metrics.rate_limited.inc()
            limit = self.settings.gateway.rate_limit
            raise ServiceError(
                429, f"rate limit of {limit.requests} requests per {limit.window_s:g} s reached; retry in {decision.retry_after_s} s",
                decision.retry_after_s,
            )

    def _redis_failed(self, exc: RedisDown, what: str) -> None:
        """Fail open (go on without `what`) or closed (refuse), as configured."""
        if self.settings.gateway.redis_failure == RedisFailure.CLOSED:
            raise ServiceError(503, f"{what} unavailable ({exc}); try again shortly", self.settings.serving.retry_after_s)

    # --- cache ------------------------------------------------------------------------

    async def cached(self, request: QueryRequest) -> CacheLookup | None:
        """The cached answer (or None) and where to store a new one; None when this request is not cacheable."""
        if not self.settings.gateway.cache.enabled:
            return None
        index = request.index or self.settings.index_name
        # A re-ingest changes the revision, a calibration the scope: either makes cached answers stale.
        row = await self.database.fetchrow(
            "SELECT i.revision, s.calibrated_at FROM indexes i LEFT JOIN index_scopes s ON s.index_id = i.id"
            " WHERE i.name = $1",
            index,
        )
        if row is None:
            return None  # an unknown index: the pipeline answers 404
        calibrated = row["calibrated_at"].isoformat() if row["calibrated_at"] else None
        lookup = CacheLookup(index, cache_key(self.fingerprint, row["revision"], request, calibrated), None)
        try:
            lookup.answer = await self.cache.get(index, lookup.key)
        except RedisDown as exc:
            self.metrics.cache.labels("error").inc()
            self._redis_failed(exc, "the response cache")
            return None
        self.metrics.cache.labels("hit" if lookup.answer else "miss").inc()
        return lookup

    async def remember(self, lookup: CacheLookup | None, answer: Answer) -> None:
        """Cache an answer worth repeating: not one given after an LLM failed."""
        if lookup is None or answer.fallbacks:
            return
        try:
            await self.cache.put(lookup.index, lookup.key, answer)
        except RedisDown as exc:
            self.metrics.cache.labels("error").inc()
            log.warning("answer not cached: %s", exc)

    @staticmethod
    def replay(answer: Answer, started: float) -> Answer:
        """A cached answer given again: a new answer_id (feedback is on this answer), marked cached."""
        total_ms = round((time.perf_counter() - started) * 1000, 2)
        return answer.model_copy(update={"answer_id": uuid.uuid4().hex, "cached": True, "timings_ms": {"total": total_ms}})

    # --- answer log -------------------------------------------------------------------

    async def record(self, answer: Answer, caller: Caller) -> None:
        """Log the answer; a failure to log never costs the user the answer."""
        try:
            await self.answers.record(answer, caller.key_name)
        except Exception as exc:  # noqa: BLE001 - the answer is given whatever happens to its log
            self.metrics.errors.labels("answer_log", type(exc).__name__).inc()
            log.warning("answer %s not logged: %s", answer.answer_id, exc)

    # --- readiness --------------------------------------------------------------------

    async def readiness(self) -> tuple[dict[str, str], dict[str, str]]:
        """(problems that make the gateway unready, degradations it answers through)."""
        if self.redis is None:
            return {}, {}
        problem = await self.redis.ping()
        if problem is None:
            return {}, {}
        if self.settings.gateway.redis_failure == RedisFailure.CLOSED:
            return {"redis": problem}, {}
        return {}, {"redis": f"{problem}; answering without cache and rate limits"}

    async def aclose(self) -> None:
        await self.database.aclose()
        if self.redis is not None:
            await self.redis.aclose()


def _unauthorized(message: str) -> ServiceError:
    return ServiceError(401, message, headers={"WWW-Authenticate": 'Bearer realm="docent"'})
