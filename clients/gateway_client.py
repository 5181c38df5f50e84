"""A small client of the gateway's HTTP API, for the CLI and other clients (Slack bot, scripts)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from http import HTTPStatus
from typing import Any

import httpx

from docent.errors import DocentError, ExitCode


class GatewayError(DocentError, RuntimeError):
    """The gateway answered with an error, or could not be reached (`status` 0).

    The gateway's 4xx are the caller's to fix (exit 2); anything else is a failure (exit 1).
    """

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        if HTTPStatus.BAD_REQUEST <= status < HTTPStatus.INTERNAL_SERVER_ERROR:
            self.exit_code = ExitCode.USAGE


def parse_sse(lines: Iterable[str]) -> Iterator[tuple[str, Any]]:
    """(event, JSON data) pairs from the lines of a `text/event-stream`; comments and pings skipped."""
    event, data = "message", []
    for line in lines:
        if not line:
            if data:
                yield event, json.loads("\n".join(data))
            event, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)
    if data:
        yield event, json.loads("\n".join(data))


class GatewayClient:
    def __init__(self, url: str, timeout: float = 120.0, api_key: str | None = None):
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
        self.http = httpx.Client(base_url=self.url, timeout=timeout, headers=headers)

    def query(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = self.http.post("/query", json=body)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        _raise_for_error(response)
        return response.json()

    def stream(self, body: dict[str, Any]) -> Iterator[tuple[str, Any]]:
        try:
            with self.http.stream("POST", "/stream", json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    _raise_for_error(response)
                yield from parse_sse(response.iter_lines())
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc

    def _unreachable(self, exc: Exception) -> GatewayError:
        return GatewayError(0, f"no gateway answering at {self.url} ({exc}): start one with `docent serve`")

    def close(self) -> None:
        self.http.close()


def _raise_for_error(response: httpx.Response) -> None:
    if response.status_code >= 400:
        error = error_of(response)
        raise GatewayError(error.status, f"HTTP {error.status}: {error.message}")


def error_of(response: httpx.Response) -> GatewayError:
    """The gateway's error response as an exception carrying its `detail`."""
    try:
        detail = response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        detail = response.text
    if isinstance(detail, list):  # FastAPI's validation errors: name each field
        detail = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', [])[1:])}: {e.get('msg')}" for e in detail)
    return GatewayError(response.status_code, str(detail))
