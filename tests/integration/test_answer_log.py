"""The answer log on the real PostgreSQL: answers and feedback kept for the retention period, then deleted."""

from __future__ import annotations

import uuid

import pytest

from docent.answers import AnswerStore, Database, UnknownAnswer
from docent.settings import Settings
from docent.types import NO_LLM, Answer, Citation, Route, Source, Usage

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
        await log.add_feedback(old.answer_id, "down", "wrong page", "team-a", "key:team-a")
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
            await log.add_feedback(old.answer_id, "up", None, None, "address:127.0.0.1")
    finally:
        await database.aclose()


async def test_one_vote_per_voter_and_answer_and_a_key_rates_only_its_own_answers():
    database = Database(Settings())
    log = AnswerStore(database, RETENTION_DAYS)
    try:
        answer = _answer()
        await log.record(answer, "team-a")
        first = await log.add_feedback(answer.answer_id, "down", "wrong", "team-a", "key:team-a")
        again = await log.add_feedback(answer.answer_id, "up", "better now", "team-a", "key:team-a")
        votes = await database.fetch("SELECT rating, comment FROM feedback WHERE answer_id = $1", answer.answer_id)
        assert again == first and [(v["rating"], v["comment"]) for v in votes] == [("up", "better now")]
        with pytest.raises(UnknownAnswer):  # another key's answer: a public widget key cannot vote on it
            await log.add_feedback(answer.answer_id, "down", None, "team-b", "key:team-b")
        await log.add_feedback(answer.answer_id, "down", None, None, "address:10.0.0.1")  # auth off: by address
        assert await database.fetchval("SELECT count(*) FROM feedback WHERE answer_id = $1", answer.answer_id) == 2
    finally:
        await database.aclose()


async def test_the_log_records_whether_an_answer_abstained_and_how_many_citations_were_unsupported():
    database = Database(Settings())
    log = AnswerStore(database, RETENTION_DAYS)
    checked = _answer().model_copy(update={
        "answer": "Set retries [1]. Jobs run on Mars [2]. Backoff doubles [1][2].",
        "citations": [
            Citation(sentence="Set retries", sources=[1], supported=True, score=0.9),
            Citation(sentence="Jobs run on Mars", sources=[2], supported=False, score=0.1),
            Citation(sentence="Backoff doubles", sources=[1, 2], supported=False, score=0.3),
        ],
    })
    abstained = _answer().model_copy(update={
        "answer": "The documentation doesn't seem to cover this.", "llm": NO_LLM, "abstained": True,
    })
    plain = _answer()  # no citations checked, not abstained: the columns' defaults
    try:
        for answer in (checked, abstained, plain):
            await log.record(answer, None)
        pool = await database.pool()
        rows = {
            row["id"]: (row["abstained"], row["unsupported_citations"])
            for row in await pool.fetch(
                "SELECT id, abstained, unsupported_citations FROM answers WHERE id = ANY($1::text[])",
                [checked.answer_id, abstained.answer_id, plain.answer_id],
            )
        }
        assert rows == {checked.answer_id: (False, 2), abstained.answer_id: (True, 0), plain.answer_id: (False, 0)}
    finally:
        await database.aclose()
