"""One answer in a Slack thread: a placeholder at once, throttled updates as tokens arrive, the final form.

The answer's text is rendered and split (`messages.split_message`) on every update: the
first part lives in the placeholder message, further parts in more messages of the
thread, posted when the text grows into them. Updates go out at most once per
`update_interval_s` (Slack allows about one `chat.update` a second per message), from
a ticker beside the stream, so a slow token stream still shows its text.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from clients.slack import messages

log = logging.getLogger(__name__)


class StreamingReply:
    def __init__(self, client: AsyncWebClient, channel: str, thread_ts: str, max_chars: int, update_interval_s: float):
        self.client, self.channel, self.thread_ts = client, channel, thread_ts
        self.max_chars = min(max_chars, messages.SECTION_TEXT_LIMIT)
        self.update_interval_s = update_interval_s
        self.text = ""
        self.sources: list[dict[str, Any]] = []
        self.answer_id: str | None = None
        self.message_ts: list[str] = []  # the thread's messages of this answer, first to last
        self._shown: list[Any] = []  # what each of them shows now
        self._lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._ticker: asyncio.Task | None = None
        self._rendered_text: str | None = None

    async def start(self) -> None:
        """Post the placeholder in the thread, then update it as the text grows."""
        blocks = messages.placeholder_blocks()
        response = await self.client.chat_postMessage(
            channel=self.channel, thread_ts=self.thread_ts, text=messages.PLACEHOLDER, blocks=blocks,
        )
        self.message_ts.append(response["ts"])
        self._shown.append((messages.PLACEHOLDER, blocks))
        self._rendered_text = ""
        self._ticker = asyncio.create_task(self._tick())

    def append(self, text: str) -> None:
        self.text += text

    async def _tick(self) -> None:
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), self.update_interval_s)
            except TimeoutError:
                pass
            if self._stop.is_set() or self.text == self._rendered_text:
                continue
            try:
                await self._render(streaming=True)
            except Exception:
                log.warning("could not update the answer in %s", self.channel, exc_info=True)

    async def _stop_ticker(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            await self._ticker  # lets an update in flight finish: message_ts stays true

    async def finish(self, done: dict[str, Any]) -> None:
        """The whole answer: its parts, then the sources, the LLM and the feedback buttons."""
        await self._stop_ticker()
        await self._render(streaming=False, done=done)

    async def fail(self, apology: str) -> None:
        """An apology in the thread: in place of the placeholder, or after the text shown so far."""
        await self._stop_ticker()
        if not self.text.strip():
            await self._show(0, apology, [messages.section(apology)])
            return
        try:
            await self._render(streaming=False)  # what was written, without the "writing…" line
        except Exception:
            log.warning("could not show the partial answer in %s", self.channel, exc_info=True)
        await self.client.chat_postMessage(channel=self.channel, thread_ts=self.thread_ts, text=apology)

    async def _render(self, streaming: bool, done: dict[str, Any] | None = None) -> None:
        async with self._lock:
            text = self.text
            body = messages.to_mrkdwn(text) if text.strip() else (
                "" if streaming else "_The docs service sent an empty answer._"
            )
            parts = messages.split_message(body, self.max_chars)
            for i, part in enumerate(parts):
                last = i == len(parts) - 1
                if last and streaming:
                    blocks = messages.streaming_blocks(part) if part else messages.placeholder_blocks()
                elif last and done is not None:
                    blocks = messages.final_blocks(part, self.sources, done, self.answer_id)
                else:
                    blocks = messages.text_blocks(part)
                await self._show(i, part or messages.PLACEHOLDER, blocks)
            if not streaming:
                for surplus in range(len(self.message_ts) - 1, len(parts) - 1, -1):
                    await self._delete(surplus)
            self._rendered_text = text

    async def _show(self, i: int, text: str, blocks: list[dict[str, Any]]) -> None:
        """Message `i` of the answer shows `blocks`: updated if it exists and differs, else posted."""
        if i < len(self.message_ts):
            if self._shown[i] == (text, blocks):
                return
            await self.client.chat_update(channel=self.channel, ts=self.message_ts[i], text=text, blocks=blocks)
            self._shown[i] = (text, blocks)
            return
        response = await self.client.chat_postMessage(
            channel=self.channel, thread_ts=self.thread_ts, text=text, blocks=blocks
        )
        self.message_ts.append(response["ts"])
        self._shown.append((text, blocks))

    async def _delete(self, i: int) -> None:
        try:
            await self.client.chat_delete(channel=self.channel, ts=self.message_ts[i])
        except SlackApiError:
            log.warning("could not delete a surplus part of an answer in %s", self.channel, exc_info=True)
        del self.message_ts[i], self._shown[i]
