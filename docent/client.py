"""A Python client of docent's gateway: questions, streamed answers, conversations, feedback.

`DocentClient` is synchronous and `AsyncDocentClient` asynchronous (both over httpx,
both context managers); they have the same methods::

    from docent.client import DocentClient

    with DocentClient("http://127.0.0.1:8000", api_key="dk_…") as docent:
        answer = docent.query("How do I retry a failed job?")
        print(answer.answer)                  # cites the sources as [1], [2]…
        for source in answer.sources:
            print(source.number, source.title, source.source)
        docent.feedback(answer.answer_id, "up")

        chat = docent.conversation()          # the gateway keeps the turns
        chat.ask("How many times is a failed job retried?")
        follow_up = chat.ask("and how do I turn that off?")
        print(follow_up.standalone_question)  # what was searched for

        for event in docent.stream("How do I scale a deployment?"):
            if isinstance(event, StreamToken):
                print(event.text, end="", flush=True)

`query` returns an `Answer` (docent.types); `stream` yields typed events: one
`StreamSources`, `StreamToken`s (and a `StreamFallback` when an LLM fails and the next
takes over), then `StreamDone`, or a `StreamError` when the answer fails midway.

Every failure is a `DocentClientError` carrying the HTTP `status` and the gateway's
`detail`: a 4xx is the caller's to fix (its `exit_code` says USAGE), 429 and 503 say
when to try again (`retry_after`). A gateway that cannot be reached raises
`GatewayUnreachable` (status 0), one that sends nothing for `timeout` seconds
`GatewayTimeout` (status 408).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from http import HTTPStatus
from typing import Any, ClassVar, Self, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from docent.errors import DocentError, ExitCode
from docent.types import Answer, Citation, Fallback, FeedbackReceipt, Rating, Route, Source, Turn, Usage

DEFAULT_TIMEOUT_S = 120.0

__all__ = [
    "AsyncConversation", "AsyncDocentClient", "Conversation", "DocentClient", "DocentClientError", "GatewayTimeout",
    "GatewayUnreachable", "SourceUse", "StreamDone", "StreamError", "StreamEvent", "StreamFallback", "StreamSources",
    "StreamToken", "error_of", "parse_sse", "query_body",
]


# --- errors ---------------------------------------------------------------------------


class DocentClientError(DocentError, RuntimeError):
    """The gateway answered with an error: `status` (its HTTP status) and `detail` (its message).

    A 4xx is the caller's to fix (`exit_code` USAGE, as the CLI exits); anything else is a
    failure (RUNTIME). `retry_after` is the seconds a 429 or 503 asked to wait.
    """

    def __init__(self, status: int, detail: str, retry_after: float | None = None, message: str | None = None):
        super().__init__(message or f"HTTP {status}: {detail}")
        self.status, self.detail, self.retry_after = status, detail, retry_after
        if HTTPStatus.BAD_REQUEST <= status < HTTPStatus.INTERNAL_SERVER_ERROR:
            self.exit_code = ExitCode.USAGE
        self.retryable = retry_after is not None or status in (HTTPStatus.TOO_MANY_REQUESTS, HTTPStatus.SERVICE_UNAVAILABLE)


class GatewayUnreachable(DocentClientError):
    """No gateway answers at the URL, or the connection broke (`status` 0)."""

    def __init__(self, detail: str):
        super().__init__(0, detail, message=detail)
        self.retryable = True


class GatewayTimeout(DocentClientError):
    """The gateway sent nothing for `timeout` seconds (`status` 408; a failure, not the caller's fault)."""

    def __init__(self, detail: str):
        super().__init__(HTTPStatus.REQUEST_TIMEOUT, detail, message=detail)
        self.exit_code = ExitCode.RUNTIME
        self.retryable = True


def error_of(response: httpx.Response) -> DocentClientError:
    """The gateway's error response (`{"detail": …}`, or FastAPI's list of invalid fields) as an exception."""
    try:
        detail: Any = response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        detail = response.text
    if isinstance(detail, list):  # FastAPI's validation errors: name each field
        detail = "; ".join(_invalid_field(e) for e in detail)
    retry_after = response.headers.get("Retry-After")
    try:
        seconds = float(retry_after) if retry_after is not None else None
    except ValueError:
        seconds = None
    return DocentClientError(response.status_code, str(detail) or response.reason_phrase, seconds)


def _invalid_field(error: Any) -> str:
    """One of FastAPI's validation errors: `options.num_chunks: Input should be…` (the body itself: the message)."""
    if not isinstance(error, dict):
        return str(error)
    where = ".".join(str(part) for part in error.get("loc", [])[1:])  # without "body" / "query"
    return f"{where}: {error.get('msg')}" if where else str(error.get("msg"))


# --- streamed events --------------------------------------------------------------------


class _Event(BaseModel):
    model_config = ConfigDict(extra="allow")  # fields a newer gateway adds are kept, not refused

    event: ClassVar[str]


class StreamSources(_Event):
    """First: the answer's id, what was searched for, the route and the sources (which are cited: see `StreamDone`)."""

    event: ClassVar[str] = "sources"
    answer_id: str
    question: str
    index: str
    route: Route
    sources: list[Source]
    conversation_id: str = ""
    standalone_question: str = ""


class StreamToken(_Event):
    """A piece of the answer's text."""

    event: ClassVar[str] = "token"
    text: str


class StreamFallback(_Event):
    """An LLM failed; the next in the fallback chain answers."""

    event: ClassVar[str] = "fallback"
    llm: str
    reason: str


class SourceUse(BaseModel):
    """What the answer made of source `number`: cited or not, and the passage it used."""

    number: int
    cited: bool = False
    snippet: str = ""


class StreamDone(_Event):
    """Last: the LLM that answered, usage, cost, timings, the checked citations, which sources were cited."""

    event: ClassVar[str] = "done"
    answer_id: str
    llm: str
    route: Route
    usage: Usage = Field(default_factory=Usage)
    cost: float = 0.0
    fallbacks: list[Fallback] = Field(default_factory=list)
    timings_ms: dict[str, float] = Field(default_factory=dict)
    cached: bool = False
    abstained: bool = False
    citations: list[Citation] = Field(default_factory=list)
    sources: list[SourceUse] = Field(default_factory=list)
    conversation_id: str = ""
    standalone_question: str = ""


class StreamError(_Event):
    """The answer failed after the stream began (before, the request itself fails)."""

    event: ClassVar[str] = "error"
    status: int = HTTPStatus.INTERNAL_SERVER_ERROR
    message: str = ""

    def error(self) -> DocentClientError:
        """This event as the exception a failed request would have raised."""
        return DocentClientError(self.status, self.message)


StreamEvent = StreamSources | StreamToken | StreamFallback | StreamDone | StreamError
_EVENTS: dict[str, type[_Event]] = {kind.event: kind for kind in (StreamSources, StreamToken, StreamFallback, StreamDone, StreamError)}


class _SSEReader:
    """Server-sent events from lines, one line at a time: `line` returns an (event, data) once complete."""

    def __init__(self) -> None:
        self.event, self.data = "message", []

    def line(self, line: str) -> tuple[str, Any] | None:
        if not line:
            return self.end()
        if line.startswith(":"):  # a comment: the gateway's pings
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self.event = value
        elif name == "data":
            self.data.append(value)
        return None

    def end(self) -> tuple[str, Any] | None:
        event, data = self.event, self.data
        self.event, self.data = "message", []
        return (event, json.loads("\n".join(data))) if data else None


def parse_sse(lines: Iterable[str]) -> Iterator[tuple[str, Any]]:
    """(event, JSON data) pairs from the lines of a `text/event-stream`; comments and pings skipped."""
    reader = _SSEReader()
    for line in lines:
        if (found := reader.line(line)) is not None:
            yield found
    if (found := reader.end()) is not None:
        yield found


def _typed(event: str, data: Any) -> StreamEvent | None:
    """A streamed event as its class (None for an event this client does not know)."""
    kind = _EVENTS.get(event)
    if kind is None:
        return None
    try:
        return kind.model_validate(data)  # type: ignore[return-value]
    except ValidationError as exc:
        raise DocentClientError(HTTPStatus.BAD_GATEWAY, f"the gateway sent a malformed `{event}` event: {exc}") from exc


# --- requests -------------------------------------------------------------------------


def query_body(
    question: str,
    index: str | None = None,
    conversation_id: str | None = None,
    history: Sequence[Turn | Mapping[str, Any]] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """The JSON body of `/query` and `/stream` (a `QueryRequest`); options set to None are left out."""
    body: dict[str, Any] = {"query": question}
    if index is not None:
        body["index"] = index
    if chosen := {name: value for name, value in options.items() if value is not None}:
        body["options"] = chosen
    if conversation_id is not None:
        body["conversation_id"] = conversation_id
    if history:
        body["history"] = [t.model_dump(mode="json") if isinstance(t, Turn) else dict(t) for t in history]
    return body


def _feedback_body(answer_id: str, rating: Rating | str, comment: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"answer_id": answer_id, "rating": str(rating)}
    if comment is not None:
        body["comment"] = comment
    return body


_Model = TypeVar("_Model", bound=BaseModel)


class _Base:
    def __init__(self, url: str, timeout: float | httpx.Timeout):
        self.url = url.rstrip("/")
        self.timeout = timeout

    @staticmethod
    def _headers(api_key: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def _transport_error(self, exc: httpx.TransportError) -> DocentClientError:
        if isinstance(exc, httpx.TimeoutException):
            seconds = self.timeout.read if isinstance(self.timeout, httpx.Timeout) else self.timeout
            waited = f" for {seconds:g} s" if seconds is not None else ""
            return GatewayTimeout(f"the gateway at {self.url} sent nothing{waited}")
        if isinstance(exc, httpx.ConnectError):
            return GatewayUnreachable(f"no gateway answering at {self.url} ({exc}): is `docent serve` running there?")
        return GatewayUnreachable(f"the connection to the gateway at {self.url} broke ({type(exc).__name__}: {exc})")

    def _parsed(self, model: type[_Model], response: httpx.Response) -> _Model:
        if response.status_code >= HTTPStatus.BAD_REQUEST:
            raise error_of(response)
        try:
            return model.model_validate(response.json())
        except (ValueError, ValidationError) as exc:
            raise DocentClientError(
                HTTPStatus.BAD_GATEWAY, f"the gateway at {self.url} sent no valid {model.__name__}: {exc}"
            ) from exc


def _decoded(reader: _SSEReader, line: str) -> StreamEvent | None:
    try:
        found = reader.line(line)
    except json.JSONDecodeError as exc:
        raise DocentClientError(HTTPStatus.BAD_GATEWAY, f"the gateway sent an event that is not JSON: {exc}") from exc
    return _typed(*found) if found is not None else None


# --- the synchronous client -------------------------------------------------------------


class DocentClient(_Base):
    """A synchronous client of a docent gateway.

    `url` is the gateway's (`docent serve`; e.g. http://127.0.0.1:8000), `api_key` one of
    its keys (`docent keys create NAME`; not needed when auth is off), `timeout` how long
    to wait to connect and for each next piece of a response. Use it as a context manager
    or `close()` it::

        with DocentClient("http://127.0.0.1:8000", api_key=key) as docent:
            print(docent.query("How do I submit a job?", llm="extractive").answer)
    """

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ):
        super().__init__(url, timeout)
        self._http = httpx.Client(base_url=self.url, headers=self._headers(api_key), timeout=timeout, transport=transport)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc

    def query(
        self,
        question: str,
        *,
        index: str | None = None,
        conversation_id: str | None = None,
        history: Sequence[Turn | Mapping[str, Any]] | None = None,
        **options: Any,
    ) -> Answer:
        """Ask `question`; the whole answer with its sources.

        `index`: the index to answer from (default: the gateway's). `conversation_id`: continue
        that conversation (an earlier answer's), or `history`: the turns so far, oldest first,
        as `Turn`s or `{"role": "user"|"assistant", "content": …}` (not both). `options`
        override retrieval and generation (`QueryOptions`: `llm`, `num_chunks`, `mode`,
        `abstain`…)::

            answer = docent.query("How do I turn that off?", history=[
                {"role": "user", "content": "How many times is a failed job retried?"},
                {"role": "assistant", "content": "Three times [1]."},
            ])
        """
        body = query_body(question, index, conversation_id, history, **options)
        with self._errors():
            response = self._http.post("/query", json=body)
        return self._parsed(Answer, response)

    def stream(
        self,
        question: str,
        *,
        index: str | None = None,
        conversation_id: str | None = None,
        history: Sequence[Turn | Mapping[str, Any]] | None = None,
        **options: Any,
    ) -> Iterator[StreamEvent]:
        """Ask `question` (as `query` does); the answer's events as they arrive.

        The request is sent when iteration starts; failures before the first event raise,
        later ones arrive as a `StreamError`::

            for event in docent.stream("How do I scale a deployment?"):
                match event:
                    case StreamToken(text=text):
                        print(text, end="")
                    case StreamDone():
                        print(f"\\n({event.llm}, ${event.cost:.5f})")
                    case StreamError():
                        raise event.error()
        """
        body = query_body(question, index, conversation_id, history, **options)
        with self._errors(), self._http.stream("POST", "/stream", json=body) as response:
            if response.status_code >= HTTPStatus.BAD_REQUEST:
                response.read()
                raise error_of(response)
            reader = _SSEReader()
            for line in response.iter_lines():
                if (event := _decoded(reader, line)) is not None:
                    yield event
            if (event := _decoded(reader, "")) is not None:
                yield event

    def feedback(self, answer_id: str, rating: Rating | str, comment: str | None = None) -> FeedbackReceipt:
        """Rate an answer `up` or `down` (by its `answer_id`), with an optional comment."""
        with self._errors():
            response = self._http.post("/feedback", json=_feedback_body(answer_id, rating, comment))
        return self._parsed(FeedbackReceipt, response)

    def conversation(self, conversation_id: str | None = None, *, index: str | None = None, **options: Any) -> Conversation:
        """A conversation (a new one, or `conversation_id`'s): each question continues it.

        `index` and `options` apply to every question asked in it::

            chat = docent.conversation(llm="extractive")
            chat.ask("How many times is a failed job retried?")
            print(chat.ask("and how do I turn that off?").answer)
        """
        return Conversation(self, conversation_id, index=index, **options)


class Conversation:
    """Questions that follow each other: the gateway keeps the turns under `conversation_id`.

    `conversation_id` is None until the first answer names it (then it never changes).
    """

    def __init__(self, client: DocentClient, conversation_id: str | None = None, *, index: str | None = None, **options: Any):
        self.client, self.conversation_id, self.index, self.options = client, conversation_id, index, options

    def ask(self, question: str, **options: Any) -> Answer:
        """The answer to `question`, read with the conversation so far."""
        answer = self.client.query(question, index=self.index, conversation_id=self.conversation_id, **{**self.options, **options})
        self.conversation_id = answer.conversation_id or self.conversation_id
        return answer

    def stream(self, question: str, **options: Any) -> Iterator[StreamEvent]:
        """`ask`, streamed: the events of `DocentClient.stream`."""
        events = self.client.stream(
            question, index=self.index, conversation_id=self.conversation_id, **{**self.options, **options}
        )
        for event in events:
            if isinstance(event, StreamSources | StreamDone) and event.conversation_id:
                self.conversation_id = event.conversation_id
            yield event


# --- the asynchronous client ------------------------------------------------------------


class AsyncDocentClient(_Base):
    """An asynchronous client of a docent gateway: `DocentClient`'s methods, awaited::

        async with AsyncDocentClient("http://127.0.0.1:8000", api_key=key) as docent:
            answer = await docent.query("How do I submit a job?")
            async for event in docent.stream("How do I scale a deployment?"):
                ...

    A stream left before its end keeps its connection until the generator is closed:
    wrap it in `contextlib.aclosing(docent.stream(...))` to close it at once.
    """

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        super().__init__(url, timeout)
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=self._headers(api_key), timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    @asynccontextmanager
    async def _errors(self) -> AsyncIterator[None]:
        try:
            yield
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc

    async def query(
        self,
        question: str,
        *,
        index: str | None = None,
        conversation_id: str | None = None,
        history: Sequence[Turn | Mapping[str, Any]] | None = None,
        **options: Any,
    ) -> Answer:
        """Ask `question`; the whole answer (see `DocentClient.query`)."""
        body = query_body(question, index, conversation_id, history, **options)
        async with self._errors():
            response = await self._http.post("/query", json=body)
        return self._parsed(Answer, response)

    async def stream(
        self,
        question: str,
        *,
        index: str | None = None,
        conversation_id: str | None = None,
        history: Sequence[Turn | Mapping[str, Any]] | None = None,
        **options: Any,
    ) -> AsyncIterator[StreamEvent]:
        """Ask `question`; the answer's events as they arrive (see `DocentClient.stream`)."""
        body = query_body(question, index, conversation_id, history, **options)
        async with self._errors(), self._http.stream("POST", "/stream", json=body) as response:
            if response.status_code >= HTTPStatus.BAD_REQUEST:
                await response.aread()
                raise error_of(response)
            reader = _SSEReader()
            async for line in response.aiter_lines():
                if (event := _decoded(reader, line)) is not None:
                    yield event
            if (event := _decoded(reader, "")) is not None:
                yield event

    async def feedback(self, answer_id: str, rating: Rating | str, comment: str | None = None) -> FeedbackReceipt:
        """Rate an answer `up` or `down` (by its `answer_id`), with an optional comment."""
        async with self._errors():
            response = await self._http.post("/feedback", json=_feedback_body(answer_id, rating, comment))
        return self._parsed(FeedbackReceipt, response)

    def conversation(
        self, conversation_id: str | None = None, *, index: str | None = None, **options: Any
    ) -> AsyncConversation:
        """A conversation (a new one, or `conversation_id`'s): each question continues it."""
        return AsyncConversation(self, conversation_id, index=index, **options)


class AsyncConversation:
    """`Conversation` for `AsyncDocentClient`: `await chat.ask(...)`, `async for event in chat.stream(...)`."""

    def __init__(
        self, client: AsyncDocentClient, conversation_id: str | None = None, *, index: str | None = None, **options: Any
    ):
        self.client, self.conversation_id, self.index, self.options = client, conversation_id, index, options

    async def ask(self, question: str, **options: Any) -> Answer:
        answer = await self.client.query(
            question, index=self.index, conversation_id=self.conversation_id, **{**self.options, **options}
        )
        self.conversation_id = answer.conversation_id or self.conversation_id
        return answer

    async def stream(self, question: str, **options: Any) -> AsyncIterator[StreamEvent]:
        events = self.client.stream(
            question, index=self.index, conversation_id=self.conversation_id, **{**self.options, **options}
        )
        async for event in events:
            if isinstance(event, StreamSources | StreamDone) and event.conversation_id:
                self.conversation_id = event.conversation_id
            yield event
