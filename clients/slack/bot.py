"""The Bolt app: mentions and direct messages answered through the gateway, 👍/👎 recorded as feedback.

`DocentBot(settings, tokens)` builds an `AsyncApp` whose Web API client talks to
`slack.api_url` and retries what Slack rate-limits (honouring `Retry-After`), connection
errors and 5xx. Events are acknowledged at once (Bolt runs the listeners after the ack);
each answer streams from the gateway (`docent.client.AsyncDocentClient`) into its thread
(see `reply.StreamingReply`). A question asked in a thread is sent with the thread's
earlier messages as the conversation's history (see `thread.py`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import OrderedDict
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from clients.slack import messages
from clients.slack.reply import StreamingReply
from clients.slack.thread import thread_turns
from docent.client import (
    AsyncDocentClient,
    DocentClientError,
    StreamDone,
    StreamError,
    StreamFallback,
    StreamSources,
    StreamToken,
)
from docent.errors import UsageError
from docent.serve_config import gateway_url
from docent.settings import Settings, SlackSettings
from docent.types import SlackMode, Turn

log = logging.getLogger(__name__)

RATE_LIMIT_RETRIES = 5
CONNECTION_RETRIES = 3
SERVER_ERROR_RETRIES = 2
ASKING_SUBTYPES = {None, "file_share", "thread_broadcast"}  # DM messages that may hold a question
SEEN_EVENTS = 1024  # message ids remembered, so that an event Slack delivers twice is answered once


class MissingTokens(UsageError, ValueError):
    """Environment variables the chosen mode needs are unset."""


@dataclass(frozen=True)
class SlackTokens:
    bot: str
    app: str | None = None  # Socket Mode's app-level token
    signing_secret: str | None = None  # the Events API's request signatures

    @classmethod
    def from_env(cls, slack: SlackSettings, environ: dict[str, str] | None = None) -> SlackTokens:
        """The tokens `slack.mode` needs, from the variables the settings name; MissingTokens names those unset."""
        env = os.environ if environ is None else environ
        wanted = [slack.bot_token_env, slack.app_token_env if slack.mode == SlackMode.SOCKET else slack.signing_secret_env]
        missing = [name for name in wanted if not env.get(name, "").strip()]
        if missing:
            raise MissingTokens(
                f"slack.mode={slack.mode} needs {' and '.join(missing)} set in the environment (the names come from "
                "slack.bot_token_env / slack.app_token_env / slack.signing_secret_env); see docs/slack.md"
            )

        def value(name: str) -> str | None:
            return env.get(name, "").strip() or None

        return cls(value(slack.bot_token_env), value(slack.app_token_env), value(slack.signing_secret_env))


def web_client(token: str, api_url: str) -> AsyncWebClient:
    """A Web API client retrying 429s after `Retry-After`, lost connections and 5xx."""
    return AsyncWebClient(
        token=token,
        base_url=api_url,
        retry_handlers=[
            AsyncRateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES),
            AsyncConnectionErrorRetryHandler(max_retry_count=CONNECTION_RETRIES),
            AsyncServerErrorRetryHandler(max_retry_count=SERVER_ERROR_RETRIES),
        ],
    )


class _ClientGiven(logging.Filter):
    """Bolt reads SLACK_BOT_TOKEN itself and warns that it is unused beside our client: it is the same token."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`token` will be unused" not in record.getMessage()


BOLT_LOGGER = logging.getLogger("clients.slack.bolt")
BOLT_LOGGER.addFilter(_ClientGiven())


class DocentBot:
    def __init__(self, settings: Settings, tokens: SlackTokens):
        self.settings, self.slack = settings, settings.slack
        self.client = web_client(tokens.bot, self.slack.api_url)
        self.app = AsyncApp(
            client=self.client,
            signing_secret=tokens.signing_secret or "",  # Socket Mode requests are not signed
            process_before_response=False,  # ack first, answer after: Slack wants an ack within 3 s
            logger=BOLT_LOGGER,
        )
        self.gateway = AsyncDocentClient(gateway_url(settings), settings.api_key, timeout=self.slack.gateway_timeout_s)
        self.answering: set[asyncio.Task] = set()
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._register()

    def _register(self) -> None:
        app = self.app

        @app.event("app_mention")
        async def on_mention(event: dict[str, Any], context: Any) -> None:
            if str(event.get("channel", "")).startswith("D"):
                return  # a mention in a DM also arrives as a message event: answered there
            await self._answer_event(event, context.bot_user_id, context.bot_id)

        @app.event("message")
        async def on_message(event: dict[str, Any], context: Any) -> None:
            if event.get("channel_type") != "im" or event.get("subtype") not in ASKING_SUBTYPES or event.get("bot_id"):
                return  # edits, deletions, bots' messages; channel messages arrive as mentions
            await self._answer_event(event, context.bot_user_id, context.bot_id)

        @app.action(messages.FEEDBACK_ACTION_PATTERN)
        async def on_feedback(ack: Any, body: dict[str, Any], action: dict[str, Any]) -> None:
            await ack()
            await self._record_feedback(body, action)

    async def _answer_event(self, event: dict[str, Any], bot_user_id: str | None, bot_id: str | None) -> None:
        channel, ts = event.get("channel"), event.get("ts")
        if not channel or not ts or self._already_seen(channel, ts):
            return
        thread_ts = event.get("thread_ts") or ts
        question = messages.question_of(event.get("text") or "", bot_user_id)
        task = asyncio.current_task()
        if task is not None:
            self.answering.add(task)
        try:
            if not question:
                await self.client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=messages.EMPTY_QUESTION)
                return
            history: list[Turn] = []
            if thread_ts != ts:  # a reply in a thread: the thread so far is the conversation
                max_turns = self.settings.conversation.max_turns
                history = await thread_turns(self.client, channel, thread_ts, ts, bot_user_id, bot_id, max_turns)
            await self.answer(channel, thread_ts, question, history)
        except Exception:
            log.exception("could not answer in channel %s", channel)
        finally:
            if task is not None:
                self.answering.discard(task)

    def _already_seen(self, channel: str, ts: str) -> bool:
        key = (channel, ts)
        if key in self._seen:
            return True
        self._seen[key] = None
        while len(self._seen) > SEEN_EVENTS:
            self._seen.popitem(last=False)
        return False

    async def answer(self, channel: str, thread_ts: str, question: str, history: list[Turn] | None = None) -> StreamingReply:
        """Stream the gateway's answer to `question` (read with `history`) into the thread; apologise when it fails."""
        slack = self.slack
        reply = StreamingReply(self.client, channel, thread_ts, slack.max_message_chars, slack.update_interval_s)
        await reply.start()
        try:
            done = None
            async with aclosing(self.gateway.stream(question, history=history)) as events:
                async for event in events:
                    if isinstance(event, StreamSources):
                        reply.sources = [s.model_dump() for s in event.sources]
                        reply.answer_id = event.answer_id
                    elif isinstance(event, StreamToken):
                        reply.append(event.text)
                    elif isinstance(event, StreamFallback):
                        log.info("the gateway's LLM %s failed (%s); the next answers", event.llm, event.reason)
                    elif isinstance(event, StreamDone):
                        done = event.model_dump()
                        reply.answer_id = event.answer_id or reply.answer_id
                    elif isinstance(event, StreamError):
                        raise event.error()
            if done is None:
                raise DocentClientError(502, "the answer's stream ended before it was done")
        except DocentClientError as exc:
            log.warning("no answer for a question in %s: %s", channel, exc.message)
            await reply.fail(messages.apology(exc.status, exc.detail))
            return reply
        except Exception as exc:
            log.exception("answering in %s failed", channel)
            await reply.fail(messages.apology(500, str(exc)))
            return reply
        await reply.finish(done)
        return reply

    async def _record_feedback(self, body: dict[str, Any], action: dict[str, Any]) -> None:
        rating = messages.FEEDBACK_ACTION_PATTERN.match(action["action_id"]).group(1)  # the listener's own pattern
        answer_id = action.get("value", "")
        channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
        message = body.get("message") or {}
        ts = message.get("ts") or (body.get("container") or {}).get("message_ts")
        user = (body.get("user") or {}).get("id")
        try:
            await self.gateway.feedback(answer_id, rating)
        except DocentClientError as exc:
            log.warning("feedback on %s not recorded: %s", answer_id, exc.message)
            if channel and user:
                await self._ephemeral(channel, user, message.get("thread_ts"), messages.FEEDBACK_FAILED)
            return
        if not (channel and ts):
            return
        blocks = messages.thanks_blocks(message.get("blocks") or [], rating, user)
        try:
            await self.client.chat_update(channel=channel, ts=ts, text=message.get("text") or "", blocks=blocks)
        except Exception:
            log.warning("could not replace the feedback buttons in %s", channel, exc_info=True)
            if user:
                await self._ephemeral(channel, user, message.get("thread_ts"), messages.THANKS)

    async def _ephemeral(self, channel: str, user: str, thread_ts: str | None, text: str) -> None:
        try:
            await self.client.chat_postEphemeral(channel=channel, user=user, thread_ts=thread_ts, text=text)
        except Exception:
            log.warning("could not send an ephemeral message in %s", channel, exc_info=True)

    async def wait_idle(self, timeout: float) -> None:
        """Wait (at most `timeout` s) for the answers being written."""
        if self.answering:
            await asyncio.wait(set(self.answering), timeout=timeout)

    async def aclose(self) -> None:
        await self.gateway.aclose()
