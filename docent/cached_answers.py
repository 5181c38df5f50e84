"""Where the gateway's cached answers live in Redis, and forgetting an index's after its contents changed.

The gateway's cache (`services/gateway/cache.py`) writes these keys; the ingest job deletes
an index's entries when it changes the index, so they do not sit there until their TTL.
"""

from __future__ import annotations

from docent.settings import Settings


def answer_key(prefix: str, index: str, key: str) -> str:
    return f"{prefix}answer:{index}:{key}"


def forget_index_answers(settings: Settings, index: str) -> int:
    """Delete the index's cached answers from Redis (after its contents changed); returns how many."""
    if not settings.redis_url:
        return 0
    import redis

    client = redis.Redis.from_url(settings.redis_url)
    try:
        keys = list(client.scan_iter(match=answer_key(settings.gateway.key_prefix, index, "*"), count=1000))
        return client.unlink(*keys) if keys else 0
    finally:
        client.close()
