"""Running the bot: one aiohttp server on `slack.host:slack.port` serving `GET /healthz`,
and in http mode `POST /slack/events` (Events API and interactivity, signatures checked
by Bolt); in socket mode the events come over Socket Mode's websocket instead.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any, Self

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

from clients.slack.bot import DocentBot, SlackTokens
from docent.settings import Settings
from docent.types import SlackMode

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
DRAIN_S = 30.0  # on shutdown, how long answers being written may take to finish


class BotServer:
    """The bot with its HTTP server (and Socket Mode connection): `async with BotServer(...)`."""

    def __init__(self, settings: Settings, tokens: SlackTokens):
        self.settings, self.tokens = settings, tokens
        self.mode = settings.slack.mode
        self.bot = DocentBot(settings, tokens)
        self.socket: AsyncSocketModeHandler | None = None
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def web_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        if self.mode == SlackMode.HTTP:
            app.router.add_post(EVENTS_PATH, self._events)
        return app

    async def _healthz(self, request: web.Request) -> web.Response:
        status: dict[str, Any] = {"status": "ok", "mode": self.mode, "answering": len(self.bot.answering)}
        if self.socket is not None:
            status["socket_connected"] = bool(await self.socket.client.is_connected())
        return web.json_response(status)

    async def _events(self, request: web.Request) -> web.Response:
        response = await self.bot.app.async_dispatch(await to_bolt_request(request))
        return await to_aiohttp_response(response)

    async def start(self) -> None:
        slack = self.settings.slack
        if self.mode == SlackMode.SOCKET:
            self.socket = AsyncSocketModeHandler(self.bot.app, self.tokens.app, web_client=self.bot.client)
            # The first URL asked for here: a rejected app token is an error now, not retries forever.
            self.socket.client.wss_uri = await self.socket.client.issue_new_wss_url()
        self._runner = web.AppRunner(self.web_app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, slack.host, slack.port).start()
        self.port = self._runner.addresses[0][1] if self._runner.addresses else slack.port
        if self.socket is not None:
            await self.socket.connect_async()

    async def stop(self, drain_s: float = DRAIN_S) -> None:
        if self.socket is not None:
            await self.socket.close_async()
        await self.bot.wait_idle(drain_s)
        if self._runner is not None:
            await self._runner.cleanup()
        await self.bot.aclose()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def check_bot_token(server: BotServer) -> dict[str, Any]:
    """Slack's `auth.test` for the bot token: the bot's name and workspace (SlackApiError if rejected)."""
    return (await server.bot.client.auth_test()).data  # type: ignore[return-value]


async def run_until_stopped(settings: Settings, tokens: SlackTokens, started: Any = None) -> None:
    """Serve until SIGINT or SIGTERM, then let the answers being written finish."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread
            pass
    server = BotServer(settings, tokens)
    try:
        identity = await check_bot_token(server)
    except BaseException:
        await server.bot.aclose()
        raise
    starting = asyncio.ensure_future(server.start())
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if starting.done():  # else: stopped while still connecting
            starting.result()  # raises what made the start fail
            if started is not None:
                started(server, identity)
            await stopping
    finally:
        for task in (starting, stopping):
            task.cancel()
        await server.stop()
