"""Every answer the gateway gives, and the feedback on it, in PostgreSQL: `AnswerStore` owns both tables.

The pool is opened on first use, in the event loop of whoever serves requests (a Serve
replica builds the app before its loop runs). Old answers are deleted, with their
feedback, once they pass `answer_retention_days`; the purge runs at most once an hour.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg

from docent.db import CONNECTION_ERRORS, DatabaseUnavailable, EmbeddedRevival, create_pool
from docent.errors import NotFound
from docent.settings import Settings
from docent.types import Answer, Role, Turn

log = logging.getLogger(__name__)

_PURGE_INTERVAL_S = 3600  # retention is counted in days: an hourly purge is prompt enough


class UnknownAnswer(NotFound, LookupError):
    pass


class UnknownConversation(NotFound, LookupError):
    pass


class Database:
    """One asyncpg pool for the gateway's own tables, opened lazily."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()
        self.revival = EmbeddedRevival(settings)

    async def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._lock:
                if self._pool is None:
                    self._pool = await create_pool(self.settings)
        return self._pool

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection; losing the database makes it `DatabaseUnavailable` (a 503) and, when it is
        the embedded one, starts it again."""
        try:
            pool = await self.pool()
            async with pool.acquire() as conn:
                yield conn
        except CONNECTION_ERRORS as exc:
            self.revival.revive()
            raise DatabaseUnavailable(f"the database is unreachable ({type(exc).__name__}: {exc})") from exc
        except DatabaseUnavailable:
            self.revival.revive()
            raise

    async def execute(self, query: str, *args: Any) -> str:
        async with self.connection() as conn:
            return await conn.execute(query, *args)

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        async with self.connection() as conn:
            return await conn.fetch(query, *args)

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        async with self.connection() as conn:
            return await conn.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        async with self.connection() as conn:
            return await conn.fetchval(query, *args)

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.close()


def _sources(answer: Answer) -> str:
    return json.dumps([s.model_dump(exclude={"text", "snippet"}) for s in answer.sources])


# Every answer that may have a problem (the flywheel's LoggedAnswer.problems decides which it
# has, and must flag nothing this leaves out), with its votes and the comments of its down-votes.
_PROBLEM_ANSWERS = """
WITH votes AS (
    SELECT answer_id,
           count(*) FILTER (WHERE rating = 'down') AS down_votes,
           count(*) FILTER (WHERE rating = 'up') AS up_votes,
           array_agg(comment ORDER BY created_at, id)
               FILTER (WHERE rating = 'down' AND coalesce(btrim(comment), '') <> '') AS comments
    FROM feedback GROUP BY answer_id
)
SELECT a.id, a.created_at, a.question, a.index_name, a.answer, a.sources::text AS sources, a.top_score, a.llm,
       a.route::text AS route, a.fallbacks::text AS fallbacks,
       coalesce(v.down_votes, 0) AS down_votes, coalesce(v.up_votes, 0) AS up_votes, v.comments
FROM answers a LEFT JOIN votes v ON v.answer_id = a.id
WHERE ($1::timestamptz IS NULL OR a.created_at >= $1)
  AND (coalesce(v.down_votes, 0) > 0
       OR ($3 = false AND (a.top_score < $2 OR a.sources = '[]'::jsonb
                           OR a.fallbacks <> '[]'::jsonb
                           OR (a.llm = $4 AND a.route ->> 'llm' IS DISTINCT FROM $4))))
ORDER BY a.created_at, a.id
"""

_ASKED = """
SELECT a.question, count(*) AS answers, coalesce(sum(u.up_votes), 0)::bigint AS up_votes
FROM answers a
LEFT JOIN (SELECT answer_id, count(*) AS up_votes FROM feedback WHERE rating = 'up' GROUP BY answer_id) u
       ON u.answer_id = a.id
WHERE ($1::timestamptz IS NULL OR a.created_at >= $1) GROUP BY a.question
"""



class AnswerStore:
    """The answers table and the feedback on it: written by the gateway, read by the flywheel."""

    def __init__(self, database: Database, retention_days: int):
        self.database, self.retention_days = database, retention_days
        self._last_purge = 0.0

    async def record(self, answer: Answer, api_key: str | None) -> None:
        # How well the best source matches, comparable across retrieval modes (a fused rank score is not).
        top_score = max((s.similarity for s in answer.sources if s.similarity is not None), default=None)
        await self.database.execute(
            "INSERT INTO answers (id, api_key, question, index_name, answer, sources, top_score, llm, route,"
            " fallbacks, usage, cost, timings_ms, cached, abstained, unsupported_citations, conversation_id,"
            " standalone_question)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
            answer.answer_id, api_key, answer.question, answer.index, answer.answer, _sources(answer), top_score,
            answer.llm, answer.route.model_dump_json(), json.dumps([f.model_dump() for f in answer.fallbacks]),
            answer.usage.model_dump_json(), answer.cost, json.dumps(answer.timings_ms), answer.cached,
            answer.abstained, sum(1 for c in answer.citations if not c.supported), answer.conversation_id or None,
            answer.standalone_question or None,
        )
        if time.monotonic() - self._last_purge > _PURGE_INTERVAL_S:
            self._last_purge = time.monotonic()
            await self.purge_expired()

    async def turns(self, conversation_id: str, api_key: str | None, max_turns: int) -> list[Turn]:
        """The last `max_turns` questions and answers of a conversation the same key (or no key) started.

        Another key's conversation is as unknown as one that never existed: ids are not secrets to probe.
        """
        rows = await self.database.fetch(
            "SELECT coalesce(standalone_question, question) AS question, answer, api_key IS NOT DISTINCT FROM $2 AS own FROM answers"
            " WHERE conversation_id = $1 ORDER BY created_at DESC, id DESC LIMIT $3",
            conversation_id, api_key, max_turns,
        )
        if not rows or not rows[0]["own"]:
            raise UnknownConversation(
                f"no conversation {conversation_id!r}: it expired (answers are kept {self.retention_days} days) "
                "or was started with another API key; start a new one by asking without conversation_id"
            )
        turns: list[Turn] = []
        for row in reversed(rows):
            turns += [Turn(role=Role.USER, content=row["question"]), Turn(role=Role.ASSISTANT, content=row["answer"])]
        return turns[-max_turns:]

    async def add_feedback(
        self, answer_id: str, rating: str, comment: str | None, api_key: str | None, voter: str
    ) -> int:
        """Record `voter`'s vote on an answer, replacing their earlier one; returns the vote's id.

        With a key, only an answer that key received can be rated: a key embedded in a public
        page cannot vote on everyone's answers. An answer the key did not receive is as unknown
        as one that never existed.
        """
        async with self.database.connection() as conn, conn.transaction():
            owner = await conn.fetchrow("SELECT api_key FROM answers WHERE id = $1", answer_id)
            if owner is None or (api_key is not None and owner["api_key"] != api_key):
                raise UnknownAnswer(
                    f"no answer with answer_id {answer_id!r} for this key (answers are kept {self.retention_days} days)"
                )
            return await conn.fetchval(
                "INSERT INTO feedback (answer_id, rating, comment, api_key, voter) VALUES ($1, $2, $3, $4, $5)"
                " ON CONFLICT (answer_id, voter) DO UPDATE SET rating = EXCLUDED.rating, comment = EXCLUDED.comment,"
                " created_at = now() RETURNING id",
                answer_id, rating, comment, api_key, voter,
            )

    async def purge_expired(self) -> int:
        status = await self.database.execute(
            "DELETE FROM answers WHERE created_at < now() - make_interval(days => $1)", self.retention_days
        )
        deleted = int(status.split()[-1])
        if deleted:
            log.info("deleted %d answers older than %d days, with their feedback", deleted, self.retention_days)
        return deleted

    async def problem_answers(
        self, since: datetime | None, low_score: float, down_voted_only: bool, extractive_llm: str
    ) -> list[asyncpg.Record]:
        """Answers since `since` that may have a problem (or only the down-voted ones), with votes; oldest first."""
        return await self.database.fetch(_PROBLEM_ANSWERS, since, low_score, down_voted_only, extractive_llm)

    async def questions_asked(self, since: datetime | None) -> list[asyncpg.Record]:
        """(question, answers, up_votes) of every question answered since `since`."""
        return await self.database.fetch(_ASKED, since)
