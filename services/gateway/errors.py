"""The error a client sees: an HTTP status, a message and, when trying later may work, Retry-After."""

from __future__ import annotations


class ServiceError(Exception):
    def __init__(self, status: int, message: str, retry_after: int | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.retry_after = status, message, retry_after
        self.headers = headers or {}
