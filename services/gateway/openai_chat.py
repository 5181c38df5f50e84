"""OpenAI-compatible chat: `POST /v1/chat/completions` and `GET /v1/models`.

Every chat front end, SDK and agent framework speaks OpenAI's chat completions, so any of
them can ask docent: the `model` is the index to answer from, the `messages` are the
conversation (the last user message is the question, the earlier user and assistant
messages its history; system messages are docent's own business and are ignored). The
answer cites `[n]` and ends with a Markdown list of the sources it cites; the non-streamed
response also carries docent's `sources`, `answer_id` and `conversation_id`. Keys, limits,
cache and answer log are those of `/query`.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import datetime
from http import HTTPStatus
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from docent.errors import UsageError
from docent.store import IndexStore
from docent.types import Answer, QueryRequest, Role, Source, Turn
from services.gateway.asking import Answered, Failed, Happening, Opened, classify
from services.gateway.dependencies import Asker, asking, policies_of
from services.generator.generator import TokenEvent

router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"])

SOURCES_HEADING = "**Sources**"
_SOURCES_MARK = f"\n\n{SOURCES_HEADING}\n"
_ROLES = {"user": Role.USER, "assistant": Role.ASSISTANT}
_IGNORED_ROLES = {"system", "developer", "tool", "function"}
_ERROR_TYPES = {
    HTTPStatus.UNAUTHORIZED: "authentication_error", HTTPStatus.FORBIDDEN: "permission_error",
    HTTPStatus.NOT_FOUND: "not_found_error", HTTPStatus.TOO_MANY_REQUESTS: "rate_limit_error",
}


class ChatRequestError(UsageError, ValueError):
    """A chat request docent cannot answer; `field` names what to fix."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")  # name, tool_calls…: accepted, not used

    role: str
    content: str | list[ContentPart] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatRequest(BaseModel):
    """OpenAI's request; parameters that tune an LLM's sampling (temperature, max_tokens…) are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(description="the index to answer from (GET /v1/models lists them)")
    messages: list[ChatMessage] = Field(min_length=1, description="the conversation; the last one is the user's question")
    stream: bool = False
    stream_options: StreamOptions | None = None


def text_of(message: ChatMessage, position: int) -> str:
    if message.content is None:
        return ""
    if isinstance(message.content, str):
        return message.content
    if any(part.type != "text" for part in message.content):
        raise ChatRequestError(f"messages.{position}.content", "docent reads text only: send text content parts")
    return "".join(part.text or "" for part in message.content)


def without_sources(text: str) -> str:
    """An earlier answer of docent's without the list of sources it ended with."""
    return text.split(_SOURCES_MARK, 1)[0]


def query_request(chat: ChatRequest) -> QueryRequest:
    """The question (the last message, a user's) and its history (the earlier user and assistant messages)."""
    *earlier, last = chat.messages
    if last.role != "user":
        raise ChatRequestError(f"messages.{len(earlier)}.role", f"the last message must be the user's question, not {last.role!r}")
    question = text_of(last, len(earlier)).strip()
    if not question:
        raise ChatRequestError(f"messages.{len(earlier)}.content", "the question is empty")
    history: list[Turn] = []
    for position, message in enumerate(earlier):
        if message.role in _IGNORED_ROLES:
            continue
        if message.role not in _ROLES:
            raise ChatRequestError(f"messages.{position}.role", f"unknown role {message.role!r}")
        text = text_of(message, position)
        if text.strip():
            history.append(Turn(role=_ROLES[message.role], content=without_sources(text)))
    try:
        return QueryRequest(query=question, index=chat.model, history=history)
    except ValidationError as exc:  # text a request may not carry (a NUL character…): the message says which
        error = exc.errors()[0]
        where = {"query": f"messages.{len(earlier)}.content", "index": "model"}.get(str(error["loc"][0]), "messages")
        raise ChatRequestError(where, f"{where}: {error['msg']}") from None


def sources_list(sources: list[Source]) -> str:
    """The Markdown list the answer ends with: the sources it cites, numbered as cited; none when it cites none."""
    cited = [s for s in sources if s.cited]
    if not cited:
        return ""
    lines = "\n".join(f"- [{s.number}] [{s.title or s.source}]({s.source})" for s in cited)
    return f"{_SOURCES_MARK}\n{lines}"


def _completion_id(answer_id: str) -> str:
    return f"chatcmpl-{answer_id}"


def _usage(answer: Answer) -> dict[str, int]:
    prompt, completion = answer.usage.prompt_tokens, answer.usage.completion_tokens
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _docent_fields(answer: Answer) -> dict[str, Any]:
    return {
        "answer_id": answer.answer_id, "conversation_id": answer.conversation_id,
        "standalone_question": answer.standalone_question, "llm": answer.llm, "cached": answer.cached,
        "abstained": answer.abstained, "cost": answer.cost,
    }


def completion(answer: Answer, created: int) -> dict[str, Any]:
    message = {"role": "assistant", "content": answer.answer + sources_list(answer.sources)}
    return {
        "id": _completion_id(answer.answer_id), "object": "chat.completion", "created": created, "model": answer.index,
        "choices": [{"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}],
        "usage": _usage(answer),
        **_docent_fields(answer),
        "sources": [s.model_dump() for s in answer.sources],
    }


def _chunk(completion_id: str, model: str, created: int, delta: dict[str, Any], finish: str | None = None,
           **extra: Any) -> bytes:
    body = {
        "id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **extra,
    }
    return _data(body)


def _data(body: Any) -> bytes:
    return f"data: {json.dumps(body, separators=(',', ':'))}\n\n".encode()


def error_body(status: int, message: str, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error shape, which its clients read."""
    kind = _ERROR_TYPES.get(status, "api_error" if status >= HTTPStatus.INTERNAL_SERVER_ERROR else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}


def speaks_openai(request: Request) -> bool:
    """The request is to this router: its errors take OpenAI's shape."""
    return request.url.path.startswith(router.prefix + "/")


async def chunks(happenings: AsyncIterator[list[Happening]], include_usage: bool) -> AsyncIterator[bytes]:
    """The answer as `chat.completion.chunk`s, then `data: [DONE]`."""
    created = int(time.time())
    completion_id, model = "", ""
    async for batch in happenings:
        frames: list[bytes] = []
        for happening in batch:
            if isinstance(happening, Opened):
                completion_id, model = _completion_id(happening.answer_id), happening.index
                frames.append(_chunk(
                    completion_id, model, created, {"role": "assistant", "content": ""},
                    answer_id=happening.answer_id, conversation_id=happening.conversation_id,
                ))
            elif isinstance(happening, TokenEvent):
                frames.append(_chunk(completion_id, model, created, {"content": happening.text}))
            elif isinstance(happening, Answered):
                frames.append(_finish(happening.answer, completion_id, created, include_usage))
            elif isinstance(happening, Failed):
                error = happening.error
                frames.append(_data(error_body(error.http_status, str(error), error.field)))
        yield b"".join(frames)
    yield b"data: [DONE]\n\n"


def _finish(answer: Answer, completion_id: str, created: int, include_usage: bool) -> bytes:
    """The sources list, the stop (with docent's fields and sources), and the usage when asked for."""
    frames = []
    listed = sources_list(answer.sources)
    if listed:
        frames.append(_chunk(completion_id, answer.index, created, {"content": listed}))
    frames.append(_chunk(
        completion_id, answer.index, created, {}, "stop", **_docent_fields(answer),
        sources=[s.model_dump() for s in answer.sources],
    ))
    if include_usage:
        frames.append(_data({
            "id": completion_id, "object": "chat.completion.chunk", "created": created, "model": answer.index,
            "choices": [], "usage": _usage(answer),
        }))
    return b"".join(frames)


@router.post("/chat/completions", summary="Answer the conversation's last question (OpenAI-compatible)")
async def chat_completions(body: ChatRequest, request: Request, caller: Asker):
    question = query_request(body)
    if not body.stream:
        answer = await asking(request, caller).answer(question)
        return JSONResponse(completion(answer, int(time.time())), headers={"X-Cache": "hit" if answer.cached else "miss"})
    streamed = await asking(request, caller).stream(question)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    headers = {"Cache-Control": "no-cache", "X-Cache": "hit" if streamed.cached else "miss"}
    return StreamingResponse(chunks(streamed.happenings, include_usage), media_type="text/event-stream", headers=headers)


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "docent"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


@router.get("/models", summary="The indexes docent answers from, as OpenAI models", response_model=ModelList)
async def models(request: Request, caller: Asker) -> ModelList:
    """One model per index that has chunks to answer from."""
    policies = policies_of(request)
    try:
        async with policies.database.connection() as conn:
            indexes = await IndexStore(conn).list()
    except Exception as exc:  # noqa: BLE001 - a database outage is a 503 with a message
        raise classify(exc, policies.settings.serving.retry_after_s) from None
    return ModelList(data=[ModelCard(id=i.name, created=_epoch(i.updated_at)) for i in indexes if i.chunks])


def _epoch(timestamp: str | None) -> int:
    return int(datetime.fromisoformat(timestamp).timestamp()) if timestamp else 0
