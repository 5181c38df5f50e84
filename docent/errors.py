"""Every failure docent explains to its user derives from `DocentError`.

An error class says once what it means to each audience: the HTTP status the gateway
answers with, the exit code the CLI ends with, and whether trying again later may work
(the gateway then sends Retry-After). The gateway and the CLI each map errors in one
place, from these attributes; a failure that is not a `DocentError` is a bug, answered
as 500 / exit 1 with its type named.
"""

from __future__ import annotations

from http import HTTPStatus


class ExitCode:
    """What the CLI's exit status says: 1 something failed, 2 the input was wrong, 130 interrupted."""

    RUNTIME = 1
    USAGE = 2
    INTERRUPTED = 130


class DocentError(Exception):
    """A failure with a message meant for the user; subclasses set what it means."""

    http_status: int = HTTPStatus.INTERNAL_SERVER_ERROR
    exit_code: int = ExitCode.RUNTIME
    retryable: bool = False  # trying again later may work: 503s carry Retry-After
    field: str | None = None  # the request field at fault, for a 422

    @property
    def message(self) -> str:
        return str(self)


class UsageError(DocentError):
    """The input is wrong (a file, an option, a request field): fixing it is up to the caller."""

    http_status = HTTPStatus.UNPROCESSABLE_ENTITY
    exit_code = ExitCode.USAGE


class NotFound(UsageError):
    """Something named by the caller does not exist (an index, an answer)."""

    http_status = HTTPStatus.NOT_FOUND


class Unavailable(DocentError):
    """A dependency is down or not ready (the database, a BM25 index, Redis): try again later."""

    http_status = HTTPStatus.SERVICE_UNAVAILABLE
    retryable = True


class UpstreamFailure(DocentError):
    """A service docent calls (an LLM endpoint) failed to answer."""

    http_status = HTTPStatus.BAD_GATEWAY


class SourceError(UsageError, ValueError):
    """A source to ingest (or read) that cannot be used as given."""


class IngestError(DocentError, RuntimeError):
    """The ingest job failed; what was written before stays, a re-run finishes."""


class DataFileError(UsageError, ValueError):
    """A data file (eval set, references, responses, training rows) that is missing or malformed."""
