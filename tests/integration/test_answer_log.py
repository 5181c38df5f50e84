"""The answer log on the real PostgreSQL: answers and feedback kept for the retention period, then deleted."""

from __future__ import annotations

import uuid

import pytest

from docent.answers import AnswerStore, Database, UnknownAnswer
from docent.settings import Settings
from docent.types import Answer, Route, Source, Usage

pytestmark = pytest.mark.integration

RETENTION_DAYS = 30


def _answer() -> Answer:
    return Answer(
        answer_id=uuid.uuid4().hex, question="How do I retry a job?", index="docs", answer="Set retries [1].",
        sources=[
            Source(number=1, source="https://x/guide.html#retries", title="Guide", text="…", score=0.03, similarity=0.61),
            Source(number=2, source="https://x/api.html", title="API", text="…", score=0.02, similarity=None),
        ],
        llm="echo", route=Route(llm="echo", reason="test"), usage=Usage(prompt_tokens=10, completion_tokens=3),
        cost=0.0, timings_ms={"total": 12.5},
    )


async def test_answers_and_their_feedback_are_deleted_after_the_retention_period():
    database = Database(Settings())
    log = AnswerStore(database, RETENTION_DAYS)
    try:
        old, recent = _answer(), _answer()
        await log.record(old, "team-a")
        await log.record(recent, None)
        await log.add_feedback(old.answer_id, "down", "wrong page", "team-a")
        pool = await database.pool()
        assert await pool.fetchval("SELECT top_score FROM answers WHERE id = $1", old.answer_id) == pytest.approx(0.61)
        await pool.execute(
            "UPDATE answers SET created_at = now() - make_interval(days => $2) WHERE id = $1", old.answer_id, RETENTION_DAYS + 1
        )
        assert await log.purge_expired() >= 1
        assert await pool.fetchval("SELECT count(*) FROM answers WHERE id = $1", old.answer_id) == 0
        assert await pool.fetchval("SELECT count(*) FROM feedback WHERE answer_id = $1", old.answer_id) == 0
        assert await pool.fetchval("SELECT count(*) FROM answers WHERE id = $1", recent.answer_id) == 1
        with pytest.raises(UnknownAnswer, match="no answer with answer_id"):
            await log.add_feedback(old.answer_id, "up", None, None)
    finally:
        await database.aclose()
