"""The response cache: an answer kept for a question already answered the same way.

An entry's key is the normalised question, the index's revision and a fingerprint of
everything else that shapes the answer (models, retrieval and generation settings,
prompt, request options), so any change misses instead of serving a stale answer. A
re-ingest bumps the index's revision; it also deletes the index's entries from Redis
(`forget_index_answers`) so they do not sit there until their TTL.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from pathlib import Path

from docent.cached_answers import answer_key
from docent.settings import CacheSettings, Settings
from docent.text import normalise_question
from docent.types import Answer, QueryRequest
from services.gateway.guarded_redis import GuardedRedis

# What the answer to a question depends on, besides the index's contents and the request.
_ANSWER_SHAPING_SETTINGS = {"embedding", "chunking", "lexical", "retrieval", "rerank", "router", "generation"}


def configuration_fingerprint(settings: Settings) -> str:
    config = settings.model_dump(mode="json", include=_ANSWER_SHAPING_SETTINGS)
    models = {kind: _file_version(settings.model_artifact(kind)) for kind in ("reranker", "router")}
    blob = json.dumps({"settings": config, "models": models}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _file_version(path: Path) -> list[float] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime]


def cache_key(fingerprint: str, revision: int, request: QueryRequest, calibrated_at: str | None = None) -> str:
    what = {
        "query": normalise_question(request.query),
        "revision": revision,
        "calibrated_at": calibrated_at,
        "options": request.options.model_dump(exclude_none=True),
        "configuration": fingerprint,
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


class LocalAnswerCache:
    """Least-recently-used answers of this process, each for `ttl_s`."""

    def __init__(self, settings: CacheSettings):
        self.ttl_s, self.capacity = settings.ttl_s, settings.local_entries
        self._entries: OrderedDict[tuple[str, str], tuple[float, str]] = OrderedDict()

    async def get(self, index: str, key: str) -> Answer | None:
        entry = self._entries.get((index, key))
        if entry is None:
            return None
        expires, payload = entry
        if time.monotonic() > expires:
            del self._entries[(index, key)]
            return None
        self._entries.move_to_end((index, key))
        return Answer.model_validate_json(payload)

    async def put(self, index: str, key: str, answer: Answer) -> None:
        self._entries[(index, key)] = (time.monotonic() + self.ttl_s, answer.model_dump_json())
        self._entries.move_to_end((index, key))
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)


class RedisAnswerCache:
    """Raises RedisDown when Redis cannot be used; the caller applies the failure policy."""

    def __init__(self, redis: GuardedRedis, settings: CacheSettings):
        self.redis, self.ttl_s = redis, settings.ttl_s

    async def get(self, index: str, key: str) -> Answer | None:
        payload = await self.redis.call(lambda r: r.get(answer_key(self.redis.prefix, index, key)))
        return Answer.model_validate_json(payload) if payload else None

    async def put(self, index: str, key: str, answer: Answer) -> None:
        payload = answer.model_dump_json()
        await self.redis.call(lambda r: r.set(answer_key(self.redis.prefix, index, key), payload, ex=self.ttl_s))
