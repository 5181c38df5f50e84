"""The Slack bot end to end: the real Bolt app and its aiohttp server, a real gateway (Ray Serve,
PostgreSQL, the test LLM server), and a fake Slack Web API server (tests/fake_slack.py).

Events reach the bot as Slack sends them: signed HTTP requests to /slack/events, or
envelopes over a Socket Mode websocket. The gateway's LLM is the test server's
`dawdler` (200 words, one every 50 ms): long enough for several throttled updates and
for the answer to be split over messages of at most 300 characters.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import re
import socket
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlencode

import httpx
import pytest

from clients.slack import messages
from clients.slack.bot import SlackTokens
from clients.slack.server import EVENTS_PATH, BotServer
from docent.db import connect
from docent.settings import Settings
from docent.types import Role, Turn
from tests.fake_slack import BOT_USER_ID, TEAM_ID, FakeSlack
from tests.gateway_fixtures import answering_llms, free_port, serve_docent

pytestmark = pytest.mark.integration

BOT_TOKEN, APP_TOKEN, SIGNING_SECRET = "xoxb-test-bot", "xapp-test-app", "test-signing-secret"
CHANNEL, DM, ASKER = "C0DOCS", "D0ASKER", "U0ASKER"
QUESTION = "How many times is a failed job retried?"
FOLLOW_UP = "and how do I turn that off?"
DM_QUESTION = "How long does Orbit wait between attempts?"
OFF_TOPIC_QUESTION = "What does the enterprise plan cost?"  # no index calibrated: abstained below similarity 0.35
UPDATE_INTERVAL_S = 0.3
MAX_MESSAGE_CHARS = 300
ANSWER_WITHIN_S = 40
DAWDLER_WORDS = [f"w{i}" for i in range(200)]  # what tests/llm_server.py's tokens-slow model streams
ACK_WITHIN_S = 3.0  # Slack's deadline for acknowledging an event


@pytest.fixture(scope="module")
def slack_api():
    fake = FakeSlack(bot_token=BOT_TOKEN, app_token=APP_TOKEN).start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def gateway(ray_local, llm_server, tmp_path_factory):
    """Auth on; every answer from the slow-streaming LLM; follow-ups condensed offline."""
    generation = {"llms": answering_llms(llm_server.base_url), "strong_llm": "dawdler"}
    conversation = {"condenser": "offline"}
    with serve_docent(tmp_path_factory.mktemp("slack"), generation=generation, conversation=conversation) as served:
        yield served


@pytest.fixture(scope="module")
async def api_key(gateway):
    from services.gateway.keys import create_key

    name = f"slack-bot-{uuid.uuid4().hex[:6]}"
    conn = await connect(Settings())
    try:
        return name, await create_key(conn, name, ["query", "feedback"])
    finally:
        await conn.close()


def bot_settings(slack_api: FakeSlack, gateway_url: str, api_key: str | None = None, **slack) -> Settings:
    return Settings(
        api_key=api_key,
        serving={"url": gateway_url},
        slack={
            "mode": "http", "host": "127.0.0.1", "port": free_port(), "api_url": slack_api.api_url,
            "update_interval_s": UPDATE_INTERVAL_S, "max_message_chars": MAX_MESSAGE_CHARS, "gateway_timeout_s": 10,
            **slack,
        },
    )


@pytest.fixture(scope="module")
async def bot(slack_api, gateway, api_key):
    settings = bot_settings(slack_api, gateway.url, api_key[1])
    async with BotServer(settings, SlackTokens(BOT_TOKEN, None, SIGNING_SECRET)) as server:
        yield server


@pytest.fixture(scope="module")
async def events(bot):
    async with httpx.AsyncClient(base_url=bot.url, timeout=10) as client:
        yield client


def signature(body: str, secret: str = SIGNING_SECRET, timestamp: int | None = None) -> dict[str, str]:
    """Slack's request signature: v0 HMAC-SHA256 of `v0:{timestamp}:{body}`."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{stamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={digest}"}


def event_callback(event: dict) -> dict:
    return {
        "token": "unused", "team_id": TEAM_ID, "api_app_id": "A0DOCENT", "type": "event_callback",
        "event_id": f"Ev{uuid.uuid4().hex[:10]}", "event_time": int(time.time()), "event": event,
    }


def mention(slack_api: FakeSlack, text: str, channel: str = CHANNEL) -> dict:
    ts = slack_api.next_ts()
    text = f"<@{BOT_USER_ID}> {text}"
    return {"type": "app_mention", "user": ASKER, "text": text, "ts": ts, "event_ts": ts, "channel": channel}


async def send_event(events: httpx.AsyncClient, event: dict, **signing) -> httpx.Response:
    body = json.dumps(event_callback(event))
    headers = {"Content-Type": "application/json", **signature(body, **signing)}
    return await events.post(EVENTS_PATH, content=body, headers=headers)


async def click(events: httpx.AsyncClient, channel: str, message: dict, action_id: str, value: str) -> httpx.Response:
    payload = {
        "type": "block_actions", "team": {"id": TEAM_ID}, "user": {"id": ASKER, "team_id": TEAM_ID},
        "api_app_id": "A0DOCENT", "container": {"type": "message", "message_ts": message["ts"], "channel_id": channel},
        "channel": {"id": channel}, "message": message, "trigger_id": "1.2.3", "response_url": "https://hooks.invalid/x",
        "actions": [{"type": "button", "action_id": action_id, "block_id": messages.FEEDBACK_BLOCK_ID, "value": value,
                     "action_ts": str(time.time())}],
    }
    body = urlencode({"payload": json.dumps(payload)})
    headers = {"Content-Type": "application/x-www-form-urlencoded", **signature(body)}
    return await events.post(EVENTS_PATH, content=body, headers=headers)


def block_types(message) -> list[str]:
    return [b["type"] for b in message.blocks]


def finished(slack_api: FakeSlack, channel: str, thread_ts: str):
    """The thread's messages once the last one carries the feedback buttons (None before)."""
    thread = slack_api.thread(channel, thread_ts)
    return thread if thread and "actions" in block_types(thread[-1]) else None


def answer_text(thread) -> str:
    return " ".join(m.blocks[0]["text"]["text"] for m in thread)


@dataclass
class Answered:
    event: dict
    acked_s: float
    thread: list
    calls: list


@pytest.fixture(scope="module")
async def conversations(slack_api, events) -> dict[str, Answered]:
    """A mention in a channel and a direct message, answered side by side (each answer takes ~10 s).

    The DM's first `chat.update` is rate-limited (429, Retry-After: 1); an edit of the DM
    and a DM from another bot come along and must be ignored.
    """
    slack_api.reset()
    slack_api.rate_limit_once("chat.update", retry_after=1, channel=DM)
    in_channel = mention(slack_api, QUESTION)
    ts = slack_api.next_ts()
    dm = {"type": "message", "channel_type": "im", "channel": DM, "user": ASKER, "text": DM_QUESTION, "ts": ts}
    edited = {**dm, "subtype": "message_changed", "ts": slack_api.next_ts()}
    from_a_bot = {**dm, "bot_id": "B0OTHER", "ts": slack_api.next_ts()}
    acked = {}
    for event in (in_channel, dm, edited, from_a_bot):
        started = time.monotonic()
        response = await send_event(events, event)
        assert response.status_code == 200, response.text
        acked[event["ts"]] = time.monotonic() - started
    threads = {}
    for channel, event in ((CHANNEL, in_channel), (DM, dm)):
        def answer(channel=channel, ts=event["ts"]):
            return finished(slack_api, channel, ts)

        threads[channel] = await slack_api.wait_for(answer, ANSWER_WITHIN_S, f"answer in {channel}")
    calls = list(slack_api.calls)

    def answered(channel: str, event: dict) -> Answered:
        in_channel_calls = [c for c in calls if c.args.get("channel") == channel]
        return Answered(event, acked[event["ts"]], threads[channel], in_channel_calls)

    return {CHANNEL: answered(CHANNEL, in_channel), DM: answered(DM, dm)}


async def test_a_mention_is_answered_in_its_thread_streamed_split_with_sources_and_buttons(conversations):
    answered = conversations[CHANNEL]
    event, thread, calls = answered.event, answered.thread, answered.calls
    assert answered.acked_s < ACK_WITHIN_S

    posts = [c for c in calls if c.method == "chat.postMessage"]
    placeholder = posts[0].args
    assert placeholder["thread_ts"] == event["ts"]
    assert messages.PLACEHOLDER in json.dumps(placeholder["blocks"], ensure_ascii=False)
    assert calls.index(posts[0]) < min(i for i, c in enumerate(calls) if c.method == "chat.update")

    # Streamed: the placeholder was updated while the answer was being written, at most once per interval.
    updates = [c for c in calls if c.method == "chat.update"]
    writing = [c for c in updates if messages.WRITING in json.dumps(c.args["blocks"], ensure_ascii=False)]
    assert len(writing) >= 3
    for ts in {c.args["ts"] for c in writing}:
        times = [c.at for c in writing if c.args["ts"] == ts]
        assert all(later - earlier >= UPDATE_INTERVAL_S * 0.9 for earlier, later in itertools.pairwise(times))

    # Split: every part within the limit, in the thread, together the whole answer.
    assert len(thread) >= 3 and all(m.thread_ts == event["ts"] for m in thread)
    assert all(len(m.blocks[0]["text"]["text"]) <= MAX_MESSAGE_CHARS for m in thread)
    assert answer_text(thread).split() == DAWDLER_WORDS
    assert all(block_types(m) == ["section"] for m in thread[:-1])

    # The last part: the sources (none cited, all folded in one line) as links to the docs, the LLM,
    # the feedback buttons named by the answer's id.
    last = thread[-1]
    assert block_types(last) == ["section", "context", "context", "actions"]
    sources = last.blocks[1]["elements"][0]["text"]
    assert sources.startswith("Sources (none cited): ") and re.search(r"<https://orbit\.example/docs/[^|>]+\|[^>]+>", sources)
    assert last.blocks[2]["elements"][0]["text"] == "Answered by *dawdler*"
    buttons = last.blocks[3]["elements"]
    assert [b["action_id"] for b in buttons] == ["docent_feedback_up", "docent_feedback_down"]
    answer_id = buttons[0]["value"]
    assert answer_id and buttons[1]["value"] == answer_id

    conn = await connect(Settings())
    try:
        logged = await conn.fetchrow("SELECT question, llm FROM answers WHERE id = $1", answer_id)
    finally:
        await conn.close()
    assert logged is not None and logged["question"] == QUESTION and logged["llm"] == "dawdler"


async def test_a_direct_message_is_answered_through_a_rate_limited_update(conversations, slack_api):
    answered = conversations[DM]
    assert answered.acked_s < ACK_WITHIN_S
    assert answer_text(answered.thread).split() == DAWDLER_WORDS
    in_dm = {m.thread_ts for m in slack_api.messages.values() if m.channel == DM}
    assert in_dm == {answered.event["ts"]}  # nothing for the edit or the other bot's message
    assert "actions" in block_types(answered.thread[-1])

    updates = [c for c in answered.calls if c.method == "chat.update"]
    assert updates[0].status == 429
    retried = updates[1]
    assert retried.status == 200 and retried.args["ts"] == updates[0].args["ts"]
    assert retried.at - updates[0].at >= 1.0  # Retry-After: 1


async def test_a_feedback_click_is_recorded_and_the_buttons_say_thanks(slack_api, events, conversations, api_key):
    last = conversations[CHANNEL].thread[-1]
    answer_id = last.blocks[-1]["elements"][0]["value"]
    shown = {"ts": last.ts, "thread_ts": last.thread_ts, "text": last.text, "blocks": last.blocks, "type": "message"}
    response = await click(events, CHANNEL, shown, "docent_feedback_down", answer_id)
    assert response.status_code == 200

    def thanked():
        message = slack_api.messages.get((CHANNEL, last.ts))
        return message if message and "actions" not in block_types(message) else None

    message = await slack_api.wait_for(thanked, 10, "thank-you")
    assert message.blocks[:3] == last.blocks[:3]
    assert message.blocks[-1]["elements"][0]["text"] == f"👎 Thanks for the feedback, <@{ASKER}>!"

    conn = await connect(Settings())
    try:
        rows = await conn.fetch("SELECT rating, api_key FROM feedback WHERE answer_id = $1", answer_id)
    finally:
        await conn.close()
    assert [(r["rating"], r["api_key"]) for r in rows] == [("down", api_key[0])]


async def test_a_question_the_docs_do_not_cover_says_so_with_the_nearest_pages(slack_api, events):
    slack_api.reset()
    event = mention(slack_api, OFF_TOPIC_QUESTION)
    assert (await send_event(events, event)).status_code == 200
    thread = await slack_api.wait_for(lambda: finished(slack_api, CHANNEL, event["ts"]), ANSWER_WITHIN_S, "abstained answer")
    assert len(thread) == 1 and block_types(thread[0]) == ["context", "section", "context", "actions"]
    header, body, footer = thread[0].blocks[0], thread[0].blocks[1], thread[0].blocks[2]
    assert header["elements"][0]["text"] == messages.NOT_IN_THE_DOCS
    text = body["text"]["text"]
    assert text.startswith("The documentation doesn't seem to cover this.\n\nThe nearest pages:\n• <https://orbit.example/docs/")
    assert footer["elements"][0]["text"] == "Searched the docs; no LLM was asked"  # and no sources: nothing was cited


async def test_a_reply_in_a_thread_is_answered_with_the_thread_s_earlier_turns(slack_api, events, bot, monkeypatch):
    """The first question has no history; the follow-up in its thread carries the question and the bot's answer."""
    slack_api.reset()
    asked: list[tuple[str, list[Turn] | None]] = []
    stream = bot.bot.gateway.stream

    def recording(question, **options):
        asked.append((question, options.get("history")))
        return stream(question, **options)

    monkeypatch.setattr(bot.bot.gateway, "stream", recording)

    def asking(text: str, thread_ts: str | None = None) -> dict:
        text = f"<@{BOT_USER_ID}> {text}"
        ts = slack_api.post_as_user(CHANNEL, ASKER, text, thread_ts)
        event = {"type": "app_mention", "user": ASKER, "text": text, "ts": ts, "event_ts": ts, "channel": CHANNEL}
        return {**event, "thread_ts": thread_ts} if thread_ts else event

    def answered_after(thread_ts: str, ts: str):
        """The bot's messages in the thread after `ts`, once the last carries the buttons."""
        mine = [m for m in slack_api.thread(CHANNEL, thread_ts) if m.user is None and float(m.ts) > float(ts)]
        return mine if mine and "actions" in block_types(mine[-1]) else None

    first = asking(QUESTION)
    assert (await send_event(events, first)).status_code == 200
    await slack_api.wait_for(lambda: answered_after(first["ts"], first["ts"]), ANSWER_WITHIN_S, "first answer")
    follow_up = asking(FOLLOW_UP, thread_ts=first["ts"])
    assert (await send_event(events, follow_up)).status_code == 200
    thread = await slack_api.wait_for(
        lambda: answered_after(first["ts"], follow_up["ts"]), ANSWER_WITHIN_S, "follow-up's answer"
    )

    assert asked[0] == (QUESTION, [])  # a first message: no history
    question, history = asked[1]
    assert question == FOLLOW_UP
    assert [turn.role for turn in history] == [Role.USER, Role.ASSISTANT]
    assert history[0].content == QUESTION  # without the mention
    assert history[1].content.split() == DAWDLER_WORDS  # the answer's parts, one turn
    replies = slack_api.calls_of("conversations.replies", CHANNEL)
    assert len(replies) == 1 and replies[0].args["ts"] == first["ts"]

    # The gateway read the follow-up with the thread: it searched for it with the first question's subject.
    answer_id = thread[-1].blocks[-1]["elements"][0]["value"]
    conn = await connect(Settings())
    try:
        logged = await conn.fetchrow("SELECT question, standalone_question FROM answers WHERE id = $1", answer_id)
    finally:
        await conn.close()
    assert logged["question"] == FOLLOW_UP and QUESTION in logged["standalone_question"]


async def test_requests_without_slack_s_signature_are_rejected(slack_api, events):
    slack_api.reset()
    event = mention(slack_api, QUESTION)
    assert (await send_event(events, event, secret="not-the-secret")).status_code == 401
    assert (await send_event(events, event, timestamp=int(time.time()) - 3600)).status_code == 401  # a replay
    unsigned = await events.post(EVENTS_PATH, json=event_callback(event))
    assert unsigned.status_code == 401

    challenge = json.dumps({"type": "url_verification", "token": "unused", "challenge": "c-123"})
    headers = {"Content-Type": "application/json", **signature(challenge)}
    verified = await events.post(EVENTS_PATH, content=challenge, headers=headers)
    assert verified.status_code == 200 and verified.json() == {"challenge": "c-123"}
    await asyncio.sleep(0.5)
    assert slack_api.calls_of("chat.postMessage") == []


async def test_healthz_answers_in_http_mode(events):
    response = await events.get("/healthz")
    assert response.status_code == 200 and response.json()["status"] == "ok"


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


@asynccontextmanager
async def silent_gateway():
    """A server that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


async def test_a_gateway_that_is_down_silent_or_refusing_gets_an_apology_in_the_thread(slack_api, gateway):
    slack_api.reset()
    cases = [  # gateway URL (None: one that never answers), the bot's key, its timeout, what the apology says
        (closed_port_url(), None, 10, "can't reach"),
        (None, None, 1, "taking too long"),
        (gateway.url, None, 10, "refused my request"),  # auth is on: no key, 401
    ]
    for url, key, timeout_s, expected in cases:
        async with silent_gateway() as silent:
            settings = bot_settings(slack_api, url or silent, key, gateway_timeout_s=timeout_s)
            tokens = SlackTokens(BOT_TOKEN, None, SIGNING_SECRET)
            async with BotServer(settings, tokens) as server, httpx.AsyncClient(base_url=server.url, timeout=10) as client:
                event = mention(slack_api, QUESTION)
                assert (await send_event(client, event)).status_code == 200

                def apology(ts=event["ts"], expected=expected):
                    thread = slack_api.thread(CHANNEL, ts)
                    return thread if thread and expected in thread[0].text else None

                thread = await slack_api.wait_for(apology, 10 + timeout_s, f"apology ({expected})")
                assert len(thread) == 1 and thread[0].text.startswith("😕 Sorry")


async def test_feedback_the_gateway_refuses_gets_a_private_apology_and_the_buttons_stay(slack_api, events):
    slack_api.reset()
    ts = slack_api.next_ts()
    blocks = [messages.section("an answer"), messages.feedback_actions("no-such-answer")]
    shown = {"type": "message", "ts": ts, "thread_ts": ts, "text": "an answer", "blocks": blocks}
    response = await click(events, CHANNEL, shown, "docent_feedback_up", "no-such-answer")
    assert response.status_code == 200
    ephemeral = await slack_api.wait_for(lambda: slack_api.calls_of("chat.postEphemeral"), 10, "ephemeral apology")
    assert ephemeral[0].args["user"] == ASKER and ephemeral[0].args["text"] == messages.FEEDBACK_FAILED
    assert slack_api.calls_of("chat.update") == []


async def test_socket_mode_receives_events_over_the_websocket(slack_api):
    """Socket Mode: connected with the app token, events acknowledged by envelope, answered (here: an apology)."""
    slack_api.reset()
    settings = bot_settings(slack_api, closed_port_url(), mode="socket")
    async with BotServer(settings, SlackTokens(BOT_TOKEN, APP_TOKEN, None)) as server:
        await slack_api.wait_for(lambda: slack_api.socket_connected, 10, "Socket Mode connection")
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            health = await client.get("/healthz")
            assert health.status_code == 200 and health.json()["mode"] == "socket"
            assert (await client.post(EVENTS_PATH, json={})).status_code == 404  # no HTTP events in socket mode
        event = mention(slack_api, QUESTION)
        envelope_id = slack_api.send_envelope("events_api", event_callback(event))

        def acked():
            return any(a.get("envelope_id") == envelope_id for a in slack_api.acks)

        await slack_api.wait_for(acked, ACK_WITHIN_S, "ack")
        thread = await slack_api.wait_for(lambda: slack_api.thread(CHANNEL, event["ts"]), 10, "apology")
        await slack_api.wait_for(lambda: "can't reach" in thread[0].text or None, 10, "apology text")
    assert slack_api.calls_of("apps.connections.open")
