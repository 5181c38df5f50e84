"""A small real Slack Web API (and Socket Mode) server for the Slack bot's tests.

It runs aiohttp in a background thread, with its own event loop, on a free local port;
point a client's `base_url` at `api_url`. It serves:

- `POST /api/auth.test`: the bot's identity (`BOT_USER_ID` in team `TEAM_ID`);
- `POST /api/chat.postMessage`, `chat.update`, `chat.delete`, `chat.postEphemeral`:
  messages kept per (channel, ts), every call recorded in `calls` with its arguments
  (JSON or form bodies; `blocks` decoded);
- `GET|POST /api/conversations.replies`: a thread's messages, oldest first (its first message,
  then the replies), with `latest`/`oldest`/`inclusive` and `limit`/`cursor` paging; people's
  messages are there once a test says they were posted (`post_as_user(...)`);
- `POST /api/apps.connections.open`: a Socket Mode URL on this server, whose websocket
  says hello, takes envelopes sent with `send_envelope(...)` and records their acks;
- any other method: `{"ok": false, "error": "unknown_method"}` (recorded too).

`rate_limit_once(method, retry_after, channel)` makes the next call of `method` (in
`channel`, if given) answer HTTP 429
with `Retry-After`, as Slack does; the 429 is recorded in `calls` with `status` 429.
A token other than the ones given is answered `invalid_auth`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

BOT_USER_ID = "UDOCENTBOT"
BOT_ID = "BDOCENTBOT"
TEAM_ID = "TFAKETEAM"
START_TIMEOUT_S = 10.0


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    status: int = 200
    at: float = field(default_factory=time.monotonic)


@dataclass
class Message:
    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    thread_ts: str | None
    updates: int = 0
    user: str | None = None  # a person who posted it (`post_as_user`); None: the bot


class FakeSlack:
    def __init__(self, bot_token: str = "xoxb-fake", app_token: str = "xapp-fake"):
        self.bot_token, self.app_token = bot_token, app_token
        self.calls: list[Call] = []
        self.messages: dict[tuple[str, str], Message] = {}
        self.acks: list[dict[str, Any]] = []
        self._rate_limits: dict[str, list[tuple[int, str | None]]] = {}
        self._lock = threading.Lock()
        self._ts = itertools.count(1)
        self._sockets: list[web.WebSocketResponse] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.port = _free_port()

    # --- running ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    def start(self) -> FakeSlack:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), name="fake-slack", daemon=True)
        self._thread.start()
        if not ready.wait(START_TIMEOUT_S):
            raise RuntimeError("the fake Slack server did not start")
        return self

    def _serve(self, ready: threading.Event) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/api/{method}", self._api)  # the SDK reads some methods with GET (conversations.replies)
        app.router.add_get("/link", self._websocket)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        ready.set()
        self._loop.run_forever()

    def stop(self) -> None:
        if self._loop is None:
            return

        async def shutdown() -> None:
            for ws in list(self._sockets):
                await ws.close()
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._loop = None

    # --- controls and records ---------------------------------------------------------

    def rate_limit_once(self, method: str, retry_after: int = 1, channel: str | None = None) -> None:
        """The next call of `method` (in `channel`, if given) is answered 429 with `Retry-After`."""
        with self._lock:
            self._rate_limits.setdefault(method, []).append((retry_after, channel))

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.messages.clear()
            self.acks.clear()
            self._rate_limits.clear()

    def calls_of(self, method: str, channel: str | None = None) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method and channel in (None, c.args.get("channel"))]

    def thread(self, channel: str, thread_ts: str) -> list[Message]:
        """The messages posted in a thread, oldest first."""
        with self._lock:
            found = [m for m in self.messages.values() if m.channel == channel and m.thread_ts == thread_ts]
        return sorted(found, key=lambda m: float(m.ts))

    async def wait_for(self, condition: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
        """Poll `condition` (from the test's event loop) until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                called = [c.method for c in self.calls]
                raise AssertionError(f"fake Slack: no {what} within {timeout} s; calls: {called}")
            await asyncio.sleep(0.05)

    # --- the Web API ------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args = await _arguments(request)
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip() or args.get("token", "")
        with self._lock:
            retry_after = self._take_rate_limit(method, args.get("channel"))
            self.calls.append(Call(method, args, 429 if retry_after is not None else 200))
        if retry_after is not None:
            headers = {"Retry-After": str(retry_after)}
            return web.json_response({"ok": False, "error": "ratelimited"}, status=429, headers=headers)
        if method == "apps.connections.open":
            if token != self.app_token:
                return web.json_response({"ok": False, "error": "invalid_auth"})
            host = request.headers.get("Host", f"127.0.0.1:{self.port}")
            return web.json_response({"ok": True, "url": f"ws://{host}/link?ticket={uuid.uuid4().hex}"})
        if token != self.bot_token:
            return web.json_response({"ok": False, "error": "invalid_auth"})
        handler = getattr(self, "_" + method.replace(".", "_"), None)
        if handler is None:
            return web.json_response({"ok": False, "error": "unknown_method"})
        return web.json_response(handler(args))

    def _take_rate_limit(self, method: str, channel: str | None) -> int | None:
        pending = self._rate_limits.get(method, [])
        for i, (retry_after, limited_channel) in enumerate(pending):
            if limited_channel in (None, channel):
                del pending[i]
                return retry_after
        return None

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True, "url": f"{self.url}/", "team": "Fake Team", "user": "docent", "team_id": TEAM_ID,
            "user_id": BOT_USER_ID, "bot_id": BOT_ID, "is_enterprise_install": False,
        }

    def _chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = args.get("channel")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        ts = self.next_ts()
        message = Message(channel, ts, args.get("text") or "", args.get("blocks") or [], args.get("thread_ts"))
        with self._lock:
            self.messages[(channel, ts)] = message
        return {"ok": True, "channel": channel, "ts": ts, "message": _as_json(message)}

    def _chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        key = (args.get("channel"), args.get("ts"))
        with self._lock:
            message = self.messages.get(key)
            if message is None:
                return {"ok": False, "error": "message_not_found"}
            message.text = args.get("text") or ""
            message.blocks = args.get("blocks") or []
            message.updates += 1
        return {"ok": True, "channel": key[0], "ts": key[1], "text": message.text, "message": _as_json(message)}

    def _chat_delete(self, args: dict[str, Any]) -> dict[str, Any]:
        key = (args.get("channel"), args.get("ts"))
        with self._lock:
            if self.messages.pop(key, None) is None:
                return {"ok": False, "error": "message_not_found"}
        return {"ok": True, "channel": key[0], "ts": key[1]}

    def _chat_postEphemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "message_ts": self.next_ts()}

    def next_ts(self) -> str:
        return f"{int(time.time())}.{next(self._ts):06d}"

    def post_as_user(self, channel: str, user: str, text: str, thread_ts: str | None = None) -> str:
        """A person's message, as Slack would keep it (the event announcing it is the test's to send); its ts."""
        ts = self.next_ts()
        with self._lock:
            self.messages[(channel, ts)] = Message(channel, ts, text, [], thread_ts, user=user)
        return ts

    def _conversations_replies(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, parent = args.get("channel"), args.get("ts")
        with self._lock:
            found = [
                m for m in self.messages.values() if m.channel == channel and parent in (m.ts, m.thread_ts)
            ]
        if not any(m.ts == parent for m in found):
            return {"ok": False, "error": "thread_not_found"}
        inclusive = str(args.get("inclusive", "")).lower() in ("1", "true")
        latest, oldest = args.get("latest"), args.get("oldest")

        def within(m: Message) -> bool:
            if m.ts == parent:
                return True  # Slack always answers with the thread's first message
            ts = float(m.ts)
            if latest and (ts > float(latest) or (ts == float(latest) and not inclusive)):
                return False
            return not (oldest and (ts < float(oldest) or (ts == float(oldest) and not inclusive)))

        thread = sorted((m for m in found if within(m)), key=lambda m: float(m.ts))
        start, limit = int(args.get("cursor") or 0), int(args.get("limit") or 1000)
        page = thread[start:start + limit]
        more = start + limit < len(thread)
        return {
            "ok": True, "messages": [_as_json(m, parent) for m in page], "has_more": more,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }

    # --- Socket Mode ------------------------------------------------------------------

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._sockets.append(ws)
        await ws.send_json({"type": "hello", "num_connections": 1, "debug_info": {"host": "fake"}})
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    with self._lock:
                        self.acks.append(json.loads(message.data))
        finally:
            self._sockets.remove(ws)
        return ws

    @property
    def socket_connected(self) -> bool:
        return bool(self._sockets)

    def send_envelope(self, kind: str, payload: dict[str, Any]) -> str:
        """Send an `events_api` / `interactive` envelope to the connected Socket Mode client; its id."""
        envelope_id = uuid.uuid4().hex
        envelope = {"envelope_id": envelope_id, "type": kind, "payload": payload, "accepts_response_payload": False}

        async def send() -> None:
            await self._sockets[-1].send_json(envelope)

        asyncio.run_coroutine_threadsafe(send(), self._loop).result(10)
        return envelope_id


async def _arguments(request: web.Request) -> dict[str, Any]:
    if request.content_type == "application/json":
        args = await request.json() if request.can_read_body else {}
    else:
        args = dict(await request.post())
    if isinstance(args.get("blocks"), str):
        args["blocks"] = json.loads(args["blocks"])
    return {**dict(request.query), **args}


def _as_json(message: Message, thread_ts: str | None = None) -> dict[str, Any]:
    """A message as the Web API shows it (in `thread_ts`'s replies, its first message says `thread_ts` too)."""
    if message.user is None:
        out = {"type": "message", "user": BOT_USER_ID, "bot_id": BOT_ID, "ts": message.ts, "text": message.text,
               "blocks": message.blocks}
    else:
        out = {"type": "message", "user": message.user, "ts": message.ts, "text": message.text}
    if message.thread_ts or message.ts == thread_ts:
        out["thread_ts"] = message.thread_ts or message.ts
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
