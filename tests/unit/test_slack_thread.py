"""A Slack thread's messages as the conversation a follow-up is read with (clients/slack/thread.py)."""

from __future__ import annotations

from clients.slack import messages
from clients.slack.thread import turns_of
from docent.types import Role

BOT_USER, BOT = "UBOT", "BBOT"


def person(ts: str, text: str, user: str = "U1", **extra) -> dict:
    return {"type": "message", "user": user, "ts": ts, "text": text, **extra}


def own(ts: str, text: str) -> dict:
    return {"type": "message", "user": BOT_USER, "bot_id": BOT, "ts": ts, "text": text}


THREAD = [
    person("1.000001", f"<@{BOT_USER}> How many times is a failed job *retried*?"),
    own("1.000002", "Three times, see <https://x.example/retries|Retries> [1] and"),  # one answer in two parts
    own("1.000003", "the backoff &amp; limits [2]."),
    person("1.000004", "thanks!", user="U2", subtype="channel_join"),  # not something said
    person("1.000005", "a digest", bot_id="BOTHER"),  # another bot
    own("1.000006", messages.apology(0)),
    person("1.000007", f"<@{BOT_USER}> and how do I turn that off?"),  # the question being answered
    person("1.000008", "later"),
]


def test_own_messages_are_the_assistant_and_people_the_user_until_the_question():
    turns = turns_of(THREAD, "1.000007", BOT_USER, BOT, max_turns=6)
    assert [(t.role, t.content) for t in turns] == [
        (Role.USER, "How many times is a failed job *retried*?"),
        (Role.ASSISTANT, "Three times, see Retries [1] and the backoff & limits [2]."),
    ]


def test_only_the_last_turns_are_kept_and_a_first_message_has_none():
    thread = [person(f"2.{i:06d}", f"q{i}") if i % 2 else own(f"2.{i:06d}", f"a{i}") for i in range(1, 11)]
    turns = turns_of(thread, "3.0", BOT_USER, BOT, max_turns=3)
    assert [t.content for t in turns] == ["a8", "q9", "a10"]
    assert turns_of(thread, "2.000001", BOT_USER, BOT, max_turns=3) == []
    assert turns_of([own("1.1", messages.PLACEHOLDER)], "2.0", BOT_USER, BOT, max_turns=3) == []
