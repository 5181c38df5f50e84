"""LLMs: one OpenAI-compatible chat endpoint, streamed, with every failure turned into a short reason.

Everything that talks to an LLM (the generator, the judge, Ragas-style scoring, golden sets,
reference answers) gets it from `open_llm` as a `ChatLLM`; `require_llm` is the one check
that a requested LLM is known.

Retries with backoff on 429, 5xx, timeouts and connection errors are the openai
client's own (it honours Retry-After); what is left after them is an `LLMFailure`, which
the generator answers by falling back to the next LLM. A stream that stalls counts as a
timeout: `timeout_s` is also httpx's read timeout, which applies to every chunk read.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

import httpx
import openai

from docent.errors import UpstreamFailure
from docent.settings import LLMSettings
from docent.tokenizer import Tokenizer, load_tokenizer
from docent.types import UnknownLLM, Usage

try:  # the openai client's own fork of httpx, when this version of it uses one
    import httpx2

    _HTTP_ERRORS: tuple[type[Exception], ...] = (httpx.HTTPError, httpx2.HTTPError)
    _HTTP_TIMEOUTS: tuple[type[Exception], ...] = (httpx.TimeoutException, httpx2.TimeoutException)
except ImportError:  # pragma: no cover - depends on the openai version installed
    _HTTP_ERRORS = (httpx.HTTPError,)
    _HTTP_TIMEOUTS = (httpx.TimeoutException,)

_RETRY_COUNT_HEADER = "x-stainless-retry-count"  # set by the openai client on every attempt
_REASON_DETAIL_CHARS = 120


class LLMFailure(UpstreamFailure):
    """An LLM gave no (complete) answer; `reason` is short and shown to users."""

    def __init__(self, llm: str, reason: str):
        super().__init__(f"{llm}: {reason}")
        self.llm, self.reason = llm, reason

    def __reduce__(self):  # crosses Serve's process boundary with its fields
        return type(self), (self.llm, self.reason)


class ChatLLM(Protocol):
    """A chat LLM as docent uses one: stream a reply to messages, then close."""

    @property
    def name(self) -> str: ...

    def stream(self, messages: list[dict[str, str]]) -> AsyncIterator[str | Usage]: ...

    async def aclose(self) -> None: ...


class WordCount:
    """Counts usage in words, for callers that ignore usage (judging, writing eval sets): no tokenizer is loaded."""

    def count(self, text: str) -> int:
        return len(text.split())

    def truncate(self, text: str, max_tokens: int) -> str:
        return " ".join(text.split()[:max_tokens])


def open_llm(settings: LLMSettings, temperature: float, tokenizer: Tokenizer | None = None) -> LLMClient:
    """The client of a configured LLM; `tokenizer` counts usage the endpoint does not report
    (default: the LLM's configured tokenizer, loaded on first use)."""
    return LLMClient(settings, temperature, tokenizer)


PRICE_UNIT_TOKENS = 1_000_000  # prices are $ per million tokens


def cost_of(settings: LLMSettings, usage: Usage) -> float:
    """Estimated $ of one call, from the LLM's configured prices."""
    return (settings.prompt_price * usage.prompt_tokens + settings.sampled_price * usage.completion_tokens) / PRICE_UNIT_TOKENS


def require_llm(name: str, known: Sequence[str], role: str = "LLM") -> str:
    """`name` when it is one of the `known` LLM names; `UnknownLLM` (a 422 / exit 2) otherwise."""
    if name not in known:
        raise UnknownLLM(name, list(known), role)
    return name


def find_llm(llms: Sequence[LLMSettings], name: str, role: str = "LLM") -> LLMSettings:
    """The configured LLM called `name`; `UnknownLLM` otherwise."""
    require_llm(name, [llm.name for llm in llms], role)
    return next(llm for llm in llms if llm.name == name)


class LLMClient:
    def __init__(self, settings: LLMSettings, temperature: float, tokenizer: Tokenizer | None = None):
        self.settings = settings
        self.temperature = temperature
        self._tokenizer = tokenizer
        self._client = openai.AsyncOpenAI(
            base_url=settings.base_url,
            api_key=os.environ.get(settings.api_key_env) or "not-needed",
            timeout=settings.timeout_s,
            max_retries=settings.max_retries,
        )

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def tokenizer(self) -> Tokenizer:
        """The tokenizer counting this LLM's tokens (loaded on first use)."""
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.settings.tokenizer)
        return self._tokenizer

    async def stream(self, messages: list[dict[str, str]]) -> AsyncIterator[str | Usage]:
        """The answer's text pieces, then one `Usage`; raises `LLMFailure`.

        Cancelling the consumer closes the HTTP stream, which stops the LLM generating.
        """
        stream = await self._open_stream(messages)
        try:
            pieces: list[str] = []
            reported: Usage | None = None
            saw_choice = False
            async for chunk in stream:
                if chunk.usage is not None:  # the last chunk, with include_usage
                    reported = _usage_of(chunk.usage)
                for choice in chunk.choices:
                    saw_choice = True
                    if choice.delta is not None and choice.delta.content:
                        pieces.append(choice.delta.content)
                        yield choice.delta.content
            if not saw_choice:
                raise LLMFailure(self.name, "the stream ended without an answer")
            yield reported or self.count_usage(messages, "".join(pieces))
        except (openai.APIError, json.JSONDecodeError, *_HTTP_ERRORS) as exc:
            raise LLMFailure(self.name, self.describe(exc)) from exc
        finally:
            await stream.close()

    async def _open_stream(self, messages: list[dict[str, str]]) -> openai.AsyncStream[Any]:
        """The streamed completion, once the endpoint answered (retries included)."""
        try:
            return await self._client.chat.completions.create(
                model=self.settings.model,
                messages=messages,  # type: ignore[arg-type]
                temperature=self.temperature,
                max_tokens=self.settings.max_tokens,
                stream=True,
                stream_options={"include_usage": True},
            )
        except (openai.APIError, *_HTTP_ERRORS) as exc:
            raise LLMFailure(self.name, self.describe(exc)) from exc

    def count_usage(self, messages: list[dict[str, str]], answer: str) -> Usage:
        """Usage counted here, for endpoints that do not report it."""
        prompt = sum(self.tokenizer.count(m["content"]) for m in messages)
        return Usage(prompt_tokens=prompt, completion_tokens=self.tokenizer.count(answer))

    def describe(self, exc: Exception) -> str:
        """A short reason: `HTTP 500 after 2 retries`, `timed out after 30 s`, `connection refused`."""
        retries = _retries_taken(exc)
        after = f" after {retries} {'retry' if retries == 1 else 'retries'}" if retries else ""
        if isinstance(exc, openai.APIStatusError):
            return f"HTTP {exc.status_code}{after}{_detail(exc.body)}"
        if isinstance(exc, (openai.APITimeoutError, *_HTTP_TIMEOUTS)):
            return f"timed out after {self.settings.timeout_s:g} s{after}"
        if isinstance(exc, (openai.APIConnectionError, *_HTTP_ERRORS)):
            return f"connection to {self.settings.base_url} failed ({_root_cause(exc)}){after}"
        if isinstance(exc, json.JSONDecodeError):
            return "the stream sent malformed JSON"
        return f"{type(exc).__name__}: {exc}"[:_REASON_DETAIL_CHARS]

    async def aclose(self) -> None:
        await self._client.close()


def _usage_of(reported: Any) -> Usage:
    return Usage(prompt_tokens=reported.prompt_tokens, completion_tokens=reported.completion_tokens)


def _retries_taken(exc: Exception) -> int:
    """Retries the openai client made before giving up, from the last attempt's headers."""
    try:
        return int(exc.request.headers.get(_RETRY_COUNT_HEADER, 0))  # type: ignore[attr-defined]
    except (AttributeError, RuntimeError, ValueError):  # no request (httpx raises RuntimeError); not a number
        return 0


def _root_cause(exc: BaseException) -> str:
    """What the innermost error says, e.g. `connection refused`, `name or service not known`."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    message = str(exc).split("] ", 1)[-1] or type(exc).__name__  # drop "[Errno n] "
    return message[:_REASON_DETAIL_CHARS].lower()


def _detail(body: object) -> str:
    """The endpoint's own error message, when it sent one."""
    message = body.get("message") if isinstance(body, dict) else None
    return f": {message[:_REASON_DETAIL_CHARS]}" if isinstance(message, str) and message else ""
