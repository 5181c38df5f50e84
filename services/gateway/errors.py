"""The error a client sees: an HTTP status, a message and, when trying later may work, Retry-After."""

from __future__ import annotations

from docent.errors import DocentError


class ServiceError(DocentError):
    """A refusal decided by the gateway itself (401, 403, 429, 503, …), with its status and headers."""

    def __init__(self, status: int, message: str, retry_after: int | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.http_status, self.retry_after = status, retry_after
        self.retryable = retry_after is not None
        self.headers = headers or {}
