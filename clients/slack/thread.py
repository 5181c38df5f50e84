"""A thread as a conversation: its earlier messages as the turns a follow-up is read with.

A question asked in a thread (a reply, not the thread's first message) goes to the gateway
with the thread's `history`: the bot's own messages are the assistant's turns (the parts
of one answer joined), the people's the user's (the bot's mention and Slack's markup
removed). Placeholders, apologies, hints and other bots' messages are left out, as is
everything from the question on; only the last `max_turns` are sent. `turns_of` is pure;
`thread_turns` reads the thread with Slack's `conversations.replies`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from clients.slack import messages
from docent.types import Role, Turn

log = logging.getLogger(__name__)

PAGE_SIZE = 200  # messages per conversations.replies call (Slack's most: 1000)
MAX_PAGES = 5  # a longer thread is read up to here: its first 1000 messages
USER_SUBTYPES = {None, "file_share", "thread_broadcast"}  # people's messages that say something
NOT_AN_ANSWER = (messages.PLACEHOLDER, messages.EMPTY_QUESTION, "😕 Sorry")  # and the apologies


def _ts(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def is_own(message: Mapping[str, Any], bot_user_id: str | None, bot_id: str | None) -> bool:
    """The bot posted this message."""
    return bool((bot_id and message.get("bot_id") == bot_id) or (bot_user_id and message.get("user") == bot_user_id))


def turns_of(
    replies: Iterable[Mapping[str, Any]],
    before_ts: str,
    bot_user_id: str | None,
    bot_id: str | None,
    max_turns: int,
) -> list[Turn]:
    """The turns of a thread's messages (oldest first) posted before `before_ts`: at most the last `max_turns`."""
    before = _ts(before_ts)
    turns: list[Turn] = []
    for message in replies:
        ts = _ts(message.get("ts"))
        if ts is None or (before is not None and ts >= before):
            continue
        text = str(message.get("text") or "")
        if is_own(message, bot_user_id, bot_id):
            if text.startswith(NOT_AN_ANSWER):
                continue
            content, role = messages.question_of(text), Role.ASSISTANT
            if turns and turns[-1].role == Role.ASSISTANT:  # the next part of the same answer
                turns[-1] = Turn(role=Role.ASSISTANT, content=f"{turns[-1].content} {content}".strip())
                continue
        elif message.get("bot_id") or message.get("subtype") not in USER_SUBTYPES:
            continue  # another bot, a join, an edit notice…
        else:
            content, role = messages.question_of(text, bot_user_id), Role.USER
        if content:
            turns.append(Turn(role=role, content=content))
    return turns[-max_turns:] if max_turns > 0 else []


async def thread_turns(
    client: AsyncWebClient,
    channel: str,
    thread_ts: str,
    before_ts: str,
    bot_user_id: str | None,
    bot_id: str | None,
    max_turns: int,
) -> list[Turn]:
    """The thread's turns before `before_ts`, read from Slack; none (logged) when Slack can't say."""
    replies: list[dict[str, Any]] = []
    cursor = None
    try:
        for _ in range(MAX_PAGES):
            response = await client.conversations_replies(
                channel=channel, ts=thread_ts, latest=before_ts, inclusive=False, limit=PAGE_SIZE, cursor=cursor
            )
            replies += response.get("messages") or []
            cursor = (response.get("response_metadata") or {}).get("next_cursor")
            if not (response.get("has_more") and cursor):
                break
    except SlackApiError as exc:  # e.g. missing_scope: channels:history / groups:history not granted
        error = exc.response.data.get("error") if isinstance(exc.response.data, dict) else exc.response.status_code
        log.warning("could not read the thread %s in %s (%s): answering without it", thread_ts, channel, error)
        return []
    except Exception:  # Slack unreachable after the client's retries: the question is still answered
        log.warning("could not read the thread %s in %s: answering without it", thread_ts, channel, exc_info=True)
        return []
    return turns_of(replies, before_ts, bot_user_id, bot_id, max_turns)
