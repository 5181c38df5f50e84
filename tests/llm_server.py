"""A small real OpenAI-compatible chat server for the tests: the only stand-in docent's tests use.

It runs uvicorn in a background thread on a free local port and serves
`POST /v1/chat/completions`, streamed (SSE) or not. The model name picks the behaviour,
so one server serves every case:

- `echo`: answers "Ray Serve scales deployments [1]. (saw N sources)", N counted in the prompt;
- `echo-no-usage`: the same, never sending usage (the client must count it);
- `flaky-429`: the first request for each question gets 429 with `Retry-After: 0`, then `echo`;
- `always-500`: always HTTP 500;
- `slow`: starts the stream (headers and the role chunk, no text), then stalls;
- `stalls-mid-answer`: streams one word of text, then stalls;
- `tokens-slow`: streams `SLOW_TOKENS` words, one every `SLOW_TOKEN_INTERVAL_S`;
  a client that hangs up before the end is recorded in `aborted_streams`;
- `no-choices`: a stream with nothing but `[DONE]`;
- `condense`: rewrites a follow-up as docent's condensing prompt asks, deterministically:
  `condense_reply` ("Standalone question: <last question> in the context of <last user line>");
- `not-covered`: answers `NOT_COVERED_REPLY` ("The provided sources do not mention this."),
  as an LLM does when the sources don't answer the question: docent flags it `abstained`.

Judge models (the last message holds the query, reference and answer):

- `judge`: a verdict of score `JUDGE_SCORE`, as JSON in a ``` fence with words around it;
- `judge-garbled-once`: garbage the first time a given message is judged, then `judge`;
- `judge-garbled`: always garbage;
- `judge-out-of-range`: a JSON verdict of score `OUT_OF_RANGE_SCORE`.

Ragas-style grading (evaluation/ragas.py), the task told apart by its system prompt and
every reply computed from the prompt's text (see `ragas_reply`):

- `ragas`: claims are the answer's sentences (in a ``` fence with words around it); a
  claim, a reference sentence or a reference answer is supported by passages that hold
  at least `SUPPORT_SHARE` of its words of 4+ letters (`supported`); verdicts come as
  booleans, as `{"passage": n, "useful": "yes"}` objects, or as 1/0 after a `Verdicts:`
  label; the relevancy questions are `relevancy_questions(answer, n)`, noncommittal when
  the answer says the docs do not say;
- `ragas-garbled-once`: garbage the first time a given message is graded, then `ragas`;
- `ragas-garbled`: always garbage.

References and golden sets:

- `reference`: answers with the first sentence of the prompt's `Context:` section;
- `golden`: `{"question": "What does the documentation say about <section title>?",
  "answer": <the section's first sentence>}` in a fence, for the section in the prompt;
- `golden-garbled`: by `golden_kind(section title)` of the prompt's section: the `golden`
  pair, no JSON, no question, an empty answer, or a question about Orbit's scheduling
  that is the same (up to a last word) for every section of that kind: duplicates.

Every request body is recorded in `requests`.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
import uuid
import zlib
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

SLOW_TOKENS = 200
SLOW_TOKEN_INTERVAL_S = 0.05
STALL_S = 300.0  # longer than any client timeout in the tests
START_TIMEOUT_S = 10.0
JUDGE_SCORE = 4
OUT_OF_RANGE_SCORE = 9
GARBLED_REPLY = "I think this answer is rather nice, all things considered."
_SOURCE_LINE = re.compile(r"^\[\d+\] ", re.MULTILINE)
SUPPORT_SHARE = 0.6
GOLDEN_KINDS = ("ok", "no JSON", "no question", "empty answer", "duplicate")
NEAR_DUPLICATES = ("How does Orbit schedule jobs?", "How does Orbit schedule jobs today?")
_CITATION = re.compile(r"\s*\[\d+(?:\s*,\s*\d+)*\]")
NOT_COVERED_REPLY = "The provided sources do not mention this."


def echo_answer(messages: list[dict[str, Any]]) -> str:
    sources = len(_SOURCE_LINE.findall(messages[-1]["content"])) if messages else 0
    return f"Ray Serve scales deployments [1]. (saw {sources} sources)"


def condense_reply(prompt: str) -> str:
    """The follow-up (after `Last question:`) read with the transcript's last `User:` line, behind a preamble."""
    transcript, _, question = prompt.rpartition("Last question:")
    users = [line.removeprefix("User:").strip() for line in transcript.splitlines() if line.startswith("User:")]
    subject = users[-1] if users else ""
    return f"Standalone question: {question.strip()} in the context of {subject}"


def judge_reply(score: int) -> str:
    verdict = json.dumps({"score": score, "reasoning": "Mostly matches the reference answer."})
    return f"Here is my verdict:\n```json\n{verdict}\n```\nHope this helps."


def words(text: str) -> list[str]:
    return re.findall(r"\S+\s*", text)


# --- ragas, references and golden replies, computed from the prompt ---------------------


def sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", _CITATION.sub("", text).strip()) if s.strip()]


def content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z_]+", text.lower()) if len(w) >= 4}


def supported(passages: str, statement: str) -> bool:
    """At least SUPPORT_SHARE of the statement's words of 4+ letters are in the passages."""
    wanted = content_words(statement)
    return not wanted or len(wanted & content_words(passages)) / len(wanted) >= SUPPORT_SHARE


def relevancy_questions(answer: str, n: int) -> list[str]:
    topic = " ".join(re.findall(r"\w+", _CITATION.sub("", answer))[:6])
    return [f"What does the documentation say about {topic}?" if i == 0 else f"What is {topic}, part {i}?"
            for i in range(n)]


def noncommittal(answer: str) -> bool:
    return "do not say" in answer.lower() or "don't know" in answer.lower()


def section(text: str, label: str, end: str | None = None) -> str:
    """The text after `label:` and before the next `end:` label."""
    after = text.split(f"{label}:\n", 1)[-1]
    return after.split(f"\n\n{end}:\n", 1)[0] if end else after


def items(block: str) -> list[str]:
    """The items of a numbered list (`[n] ...` or `n. ...`, one blank line apart), found in order 1, 2, …"""
    starts: list[int] = []
    while (at := _item_start(block, len(starts) + 1, starts[-1] if starts else None)) is not None:
        starts.append(at)
    return [block[a:b].strip().split(" ", 1)[-1] for a, b in zip(starts, [*starts[1:], len(block)])]


def _item_start(block: str, number: int, after: int | None) -> int | None:
    marks = (f"[{number}] ", f"{number}. ")
    if after is None:
        return 0 if block.startswith(marks) else None
    found = [at for mark in marks if (at := block.find(f"\n\n{mark}", after)) >= 0]
    return min(found) + 2 if found else None


def ragas_reply(system: str, user: str) -> str:
    if '"claims"' in system:
        claims = json.dumps({"claims": sentences(section(user, "Answer"))})
        return f"Here are the claims:\n```json\n{claims}\n```\nDone."
    if '"questions"' in system:
        wanted = int(re.search(r"write (\d+) different questions", system).group(1))
        answer = section(user, "Answer")
        return json.dumps({"questions": relevancy_questions(answer, wanted), "noncommittal": noncommittal(answer)})
    if "useful" in system:
        reference, passages = section(user, "Reference answer", "Passages"), items(section(user, "Passages"))
        verdicts = [{"passage": i, "useful": "yes" if supported(p, reference) else "no"} for i, p in enumerate(passages, 1)]
        return json.dumps({"verdicts": verdicts})
    if "sentence" in system:
        passages = section(user, "Passages", "Reference answer sentences")
        verdicts = [int(supported(passages, s)) for s in items(section(user, "Reference answer sentences"))]
        return f"Verdicts: {json.dumps({'verdicts': verdicts})}"
    passages = section(user, "Passages", "Claims")
    return json.dumps({"verdicts": [supported(passages, claim) for claim in items(section(user, "Claims"))]})


def reference_reply(user: str) -> str:
    found = sentences(section(user, "Context"))
    return found[0] if found else "The context does not say."


def golden_kind(title: str) -> str:
    return GOLDEN_KINDS[zlib.crc32(title.encode()) % len(GOLDEN_KINDS)]


def golden_reply(user: str, garbled: bool) -> str:
    title = re.search(r"^Section: (.*)$", user, re.MULTILINE).group(1)
    first = (sentences(section(user, "Text")) or [""])[0]
    pair = {"question": f"What does the documentation say about {title}?", "answer": first}
    kind = golden_kind(title) if garbled else None
    if kind == "no JSON":
        return "Sorry, I would rather not write a question about this."
    if kind == "no question":
        pair = {"answer": first}
    elif kind == "empty answer":
        pair["answer"] = ""
    elif kind == "duplicate":
        pair["question"] = NEAR_DUPLICATES[zlib.crc32(title.encode()) // len(GOLDEN_KINDS) % 2]
    return f"```json\n{json.dumps(pair)}\n```"


class SSEResponse(Response):
    """Server-sent events from an async iterator, stopped as soon as the client disconnects.

    `on_abort` runs when the client left before the events ended. Unlike Starlette's
    StreamingResponse, a disconnect is seen even while the iterator sleeps.
    """

    media_type = "text/event-stream"

    def __init__(self, events: AsyncIterator[dict[str, Any] | str], on_abort: Any = None):
        # Like StreamingResponse: no body, so no Content-Length; the response is chunked.
        self.status_code, self.background = 200, None
        self.init_headers({"cache-control": "no-cache"})
        self.events, self.on_abort = events, on_abort

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        streaming = asyncio.create_task(self._send_events(send))
        disconnect = asyncio.create_task(_wait_for_disconnect(receive))
        done, _ = await asyncio.wait({streaming, disconnect}, return_when=asyncio.FIRST_COMPLETED)
        if streaming not in done:
            streaming.cancel()
            if self.on_abort is not None:
                self.on_abort()
        disconnect.cancel()
        await asyncio.gather(streaming, disconnect, return_exceptions=True)

    async def _send_events(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        async for event in self.events:
            data = event if isinstance(event, str) else json.dumps(event)
            await send({"type": "http.response.body", "body": f"data: {data}\n\n".encode(), "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class LLMServer:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[dict[str, Any]] = []
        self._aborted: list[str] = []
        self._seen_questions: set[str] = set()
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        app = Starlette(routes=[Route("/v1/chat/completions", self.chat_completions, methods=["POST"])])
        # In a thread that is not the main one, uvicorn installs no signal handlers.
        config = uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True)

    # --- what the tests read -------------------------------------------------------------

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Every request body received so far (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def aborted_streams(self) -> list[str]:
        """Last user message of each `tokens-slow` stream the client hung up on."""
        with self._lock:
            return list(self._aborted)

    def requests_about(self, text: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if text in r["messages"][-1]["content"]]

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> LLMServer:
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the test LLM server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(START_TIMEOUT_S)

    # --- the endpoint -------------------------------------------------------------------

    async def chat_completions(self, request: Request) -> Response:
        body = await request.json()
        with self._lock:
            self._requests.append(body)
        model, messages = body.get("model", ""), body.get("messages", [])
        question = messages[-1]["content"] if messages else ""
        if model == "always-500":
            return error(500, "the model crashed")
        if model == "flaky-429" and self._first_time(question):
            return error(429, "slow down", headers={"Retry-After": "0"})
        if model == "no-choices":
            return SSEResponse(nothing_but_done())
        events = self._events(model, messages)
        if events is None:
            return error(404, f"model {model!r} does not exist")
        if not body.get("stream"):
            return JSONResponse(completion(model, NOT_COVERED_REPLY if model == "not-covered" else echo_answer(messages)))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage")) and model != "echo-no-usage"
        stream = sse_events(model, events, include_usage, prompt_words=sum(len(words(m["content"])) for m in messages))
        return SSEResponse(stream, on_abort=lambda: self._record_abort(question) if model == "tokens-slow" else None)

    def _first_time(self, question: str) -> bool:
        with self._lock:
            first = question not in self._seen_questions
            self._seen_questions.add(question)
            return first

    def _record_abort(self, question: str) -> None:
        with self._lock:
            self._aborted.append(question)

    def _events(self, model: str, messages: list[dict[str, Any]]) -> AsyncIterator[str] | None:
        """The text pieces a model streams (None: no such model)."""
        question = messages[-1]["content"] if messages else ""
        if model in ("echo", "echo-no-usage", "flaky-429"):
            return paced(words(echo_answer(messages)), interval=0)
        if model == "not-covered":
            return paced(words(NOT_COVERED_REPLY), interval=0)
        if model == "condense":
            return paced(words(condense_reply(question)), interval=0)
        if model == "slow":
            return paced([], interval=0, stall_after=True)
        if model == "stalls-mid-answer":
            return paced(["Ray "], interval=0, stall_after=True)
        if model == "judge" or (model == "judge-garbled-once" and not self._first_time(f"{model}\n{question}")):
            return paced(words(judge_reply(JUDGE_SCORE)), interval=0)
        if model in ("judge-garbled", "judge-garbled-once"):
            return paced(words(GARBLED_REPLY), interval=0)
        if model == "judge-out-of-range":
            return paced(words(judge_reply(OUT_OF_RANGE_SCORE)), interval=0)
        system = messages[0]["content"] if len(messages) > 1 else ""
        if model == "ragas" or (model == "ragas-garbled-once" and not self._first_time(f"{model}\n{system}\n{question}")):
            return paced(words(ragas_reply(system, question)), interval=0)
        if model in ("ragas-garbled", "ragas-garbled-once"):
            return paced(words(GARBLED_REPLY), interval=0)
        if model == "reference":
            return paced(words(reference_reply(question)), interval=0)
        if model in ("golden", "golden-garbled"):
            return paced(words(golden_reply(question, garbled=model == "golden-garbled")), interval=0)
        if model == "tokens-slow":
            return paced([f"w{i} " for i in range(SLOW_TOKENS)], interval=SLOW_TOKEN_INTERVAL_S)
        return None


async def nothing_but_done() -> AsyncIterator[str]:
    yield "[DONE]"


async def paced(pieces: list[str], interval: float, stall_after: bool = False) -> AsyncIterator[str]:
    for piece in pieces:
        yield piece
        await asyncio.sleep(interval)
    if stall_after:
        await asyncio.sleep(STALL_S)


async def sse_events(
    model: str, pieces: AsyncIterator[str], include_usage: bool, prompt_words: int
) -> AsyncIterator[dict[str, Any] | str]:
    """chat.completion.chunk events: the role, the text, the finish, usage when asked, [DONE]."""
    chunk_id = f"chatcmpl-{uuid.uuid4().hex[:12]}"
    yield chunk(chunk_id, model, {"role": "assistant", "content": ""})
    sent = 0
    async for piece in pieces:
        sent += 1
        yield chunk(chunk_id, model, {"content": piece})
    yield chunk(chunk_id, model, {}, finish_reason="stop")
    if include_usage:
        yield {**chunk(chunk_id, model, None), "usage": usage(prompt_words, sent)}
    yield "[DONE]"


def chunk(chunk_id: str, model: str, delta: dict[str, Any] | None, finish_reason: str | None = None) -> dict[str, Any]:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish_reason}]
    return {
        "id": chunk_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
    }


def completion(model: str, text: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": usage(0, len(words(text))),
    }


def usage(prompt: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion_tokens, "total_tokens": prompt + completion_tokens}


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "test_error", "code": status}}, status, headers=headers)
