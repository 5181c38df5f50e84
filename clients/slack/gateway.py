"""The bot's asynchronous client of the gateway: `/stream` as events, `/feedback`.

Every request carries the API key (`Settings.api_key`) as `Authorization: Bearer`.
`timeout_s` bounds connecting and every wait for the next bytes: a gateway that is down,
or silent for that long, raises `GatewayError` (status 0: unreachable; 408: too slow).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from clients.gateway_client import GatewayError, error_of, parse_sse

TIMED_OUT = 408


class AsyncGateway:
    def __init__(
        self, url: str, api_key: str | None, timeout_s: float, transport: httpx.AsyncBaseTransport | None = None
    ):
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.AsyncClient(
            base_url=self.url, headers=headers, timeout=httpx.Timeout(timeout_s), transport=transport
        )
        self.timeout_s = timeout_s

    async def stream(self, question: str) -> AsyncIterator[tuple[str, Any]]:
        """(event, data) of the answer's server-sent events: sources, token…, fallback, done or error."""
        try:
            async with self.http.stream("POST", "/stream", json={"query": question}) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise error_of(response)
                lines: list[str] = []
                async for line in response.aiter_lines():
                    if line:
                        lines.append(line)
                        continue
                    for event in parse_sse([*lines, ""]):
                        yield event
                    lines = []
                for event in parse_sse(lines):
                    yield event
        except httpx.TimeoutException as exc:
            raise GatewayError(TIMED_OUT, f"the gateway at {self.url} sent nothing for {self.timeout_s:g} s") from exc
        except httpx.TransportError as exc:
            raise GatewayError(0, f"no gateway answering at {self.url} ({exc!r})") from exc
        except json.JSONDecodeError as exc:
            raise GatewayError(502, f"the gateway sent an event that is not JSON: {exc}") from exc

    async def feedback(self, answer_id: str, rating: str, comment: str | None = None) -> dict[str, Any]:
        """Record 👍 (`up`) or 👎 (`down`) on an answer."""
        body: dict[str, Any] = {"answer_id": answer_id, "rating": rating}
        if comment:
            body["comment"] = comment
        try:
            response = await self.http.post("/feedback", json=body)
        except httpx.TimeoutException as exc:
            raise GatewayError(TIMED_OUT, f"the gateway at {self.url} did not answer in {self.timeout_s:g} s") from exc
        except httpx.TransportError as exc:
            raise GatewayError(0, f"no gateway answering at {self.url} ({exc!r})") from exc
        if response.status_code >= 400:
            raise error_of(response)
        try:
            return response.json()
        except ValueError:
            return {}

    async def aclose(self) -> None:
        await self.http.aclose()
