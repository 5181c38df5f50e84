"""One way to call a stage, whether it runs in this process or behind a Serve deployment handle.

The pipeline awaits `stage.method(...)` and iterates `stage.stream("method", ...)`; with
a handle these become `.remote()` calls, in-process they are plain method calls. The
benchmark's in-process run and the Serve application thus share every line of the
pipeline.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any


class LocalStage:
    def __init__(self, service: Any):
        self._service = service

    def __getattr__(self, method: str):
        return getattr(self._service, method)

    def stream(self, method: str, *args: Any) -> AsyncIterator[Any]:
        return getattr(self._service, method)(*args)


class RemoteStage:
    def __init__(self, handle: Any):
        self._handle = handle

    def __getattr__(self, method: str):
        remote = getattr(self._handle, method).remote
        return lambda *args: remote(*args)

    def stream(self, method: str, *args: Any) -> AsyncIterator[Any]:
        return _cancel_on_exit(getattr(self._handle.options(stream=True), method).remote(*args))


async def _cancel_on_exit(response) -> AsyncIterator[Any]:
    """Items of a streaming handle call; a consumer that stops early cancels the replica's work."""
    finished = False
    try:
        async for item in response:
            yield item
        finished = True
    finally:
        if not finished:
            response.cancel()
