"""Rate limits per API key: a sliding window of `requests` per `window_s`.

In Redis, each caller's window is a sorted set of request times, checked and updated by
one Lua script (atomic across gateway replicas, timed by Redis's clock). Without Redis,
the same window is kept in this process.
"""

from __future__ import annotations

import math
import time
import uuid
from collections import deque
from dataclasses import dataclass

from docent.settings import RateLimitSettings
from services.gateway.guarded_redis import GuardedRedis

# KEYS[1]: the caller's window; ARGV: window ms, limit, a unique member for this request.
# Returns {1, 0} when allowed, {0, ms until a slot frees} when not.
_SLIDING_WINDOW = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now_ms, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return {1, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, tonumber(oldest[2]) + window - now_ms}
"""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after_s: int = 0


def _retry_after(wait_s: float) -> int:
    return max(1, math.ceil(wait_s))


class LocalRateLimiter:
    def __init__(self, settings: RateLimitSettings):
        self.limit, self.window_s = settings.requests, settings.window_s
        self._windows: dict[str, deque[float]] = {}

    async def check(self, caller: str) -> Decision:
        now = time.monotonic()
        window = self._windows.setdefault(caller, deque())
        while window and window[0] <= now - self.window_s:
            window.popleft()
        if len(window) < self.limit:
            window.append(now)
            return Decision(True)
        return Decision(False, _retry_after(window[0] + self.window_s - now))


class RedisRateLimiter:
    """Raises RedisDown when Redis cannot decide; the caller applies the failure policy."""

    def __init__(self, redis: GuardedRedis, settings: RateLimitSettings):
        self.redis, self.limit = redis, settings.requests
        self.window_ms = int(settings.window_s * 1000)
        self._script = redis.client.register_script(_SLIDING_WINDOW)

    async def check(self, caller: str) -> Decision:
        key = f"{self.redis.prefix}ratelimit:{caller}"
        allowed, wait_ms = await self.redis.call(
            lambda _: self._script(keys=[key], args=[self.window_ms, self.limit, uuid.uuid4().hex])
        )
        return Decision(True) if allowed else Decision(False, _retry_after(wait_ms / 1000))
