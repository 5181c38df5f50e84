"""`docent slack`: run the Slack bot until Ctrl-C or SIGTERM."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

import typer

from cli.support import RUNTIME_ERROR, USAGE_ERROR, clear_errors, cli_settings, console, fail
from docent.serve_config import gateway_url
from docent.types import SlackMode

# Slack's answers to a bot token it will not take: a settings problem, not a passing one.
_REJECTED_TOKEN = {
    "invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired", "not_allowed_token_type",
}


def slack(
    mode: Annotated[
        SlackMode | None, typer.Option(help="socket (Socket Mode) or http (Events API); default: slack.mode")
    ] = None,
    host: Annotated[str | None, typer.Option(help="address of /healthz and /slack/events; default: slack.host")] = None,
    port: Annotated[int | None, typer.Option(help="listen port; default: slack.port")] = None,
) -> None:
    """Run the Slack bot: answers mentions and direct messages through the gateway (serving.url), until Ctrl-C.

    Tokens come from the environment variables the settings name: SLACK_BOT_TOKEN, plus SLACK_APP_TOKEN in socket mode or SLACK_SIGNING_SECRET in http mode. DOCENT_API_KEY is sent to the gateway. Set-up: docs/slack.md.
    """
    from aiohttp import ClientError
    from slack_sdk.errors import SlackApiError

    from clients.slack.bot import MissingTokens, SlackTokens
    from clients.slack.server import EVENTS_PATH, run_until_stopped

    with clear_errors():
        settings = cli_settings(slack={"mode": mode, "host": host, "port": port})
    try:
        tokens = SlackTokens.from_env(settings.slack)
    except MissingTokens as exc:
        raise fail(str(exc), USAGE_ERROR) from None
    _configure_logging()

    def started(server, identity) -> None:
        slack_settings = settings.slack
        where = f"http://{slack_settings.host}:{server.port}"
        console.print(
            f"[bold green]docent's Slack bot is running[/] as @{identity.get('user', '?')} in "
            f"{identity.get('team', '?')} ({slack_settings.mode} mode), asking {gateway_url(settings)}",
            highlight=False,
        )
        events = f" · events at {where}{EVENTS_PATH}" if slack_settings.mode == SlackMode.HTTP else ""
        console.print(f"  health at {where}/healthz{events}.  Ctrl-C stops.", highlight=False)
        if not settings.api_key:
            console.print("  [yellow]no DOCENT_API_KEY: only a gateway without auth answers[/]", highlight=False)

    try:
        asyncio.run(run_until_stopped(settings, tokens, started))
    except SlackApiError as exc:
        error = exc.response.get("error") if exc.response is not None else None
        if error in _REJECTED_TOKEN:
            app_token = "apps.connections.open" in str(getattr(exc.response, "api_url", ""))
            variable = settings.slack.app_token_env if app_token else settings.slack.bot_token_env
            raise fail(f"Slack rejected the token in {variable} ({error})", USAGE_ERROR) from None
        raise fail(f"Slack refused to start the bot: {error or exc}", RUNTIME_ERROR) from None
    except (ClientError, TimeoutError) as exc:
        reason = str(exc) or type(exc).__name__
        raise fail(f"cannot reach Slack at {settings.slack.api_url}: {reason}", RUNTIME_ERROR) from None
    except OSError as exc:
        raise fail(f"cannot listen on {settings.slack.host}:{settings.slack.port}: {exc}", RUNTIME_ERROR) from None
    except KeyboardInterrupt:
        pass
    console.print("stopped")


def _configure_logging() -> None:
    """The bot's own log lines (questions failing, feedback not recorded) on stderr; libraries' warnings only."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("clients.slack").setLevel(logging.INFO)
    logging.getLogger("clients.slack.bolt").setLevel(logging.WARNING)
