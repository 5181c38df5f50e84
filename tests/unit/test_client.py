"""docent.client without a gateway: requests and replies through httpx's MockTransport.

The real gateway is tests/integration/test_client.py's; here, what the client sends, how
it reads events and errors (every shape the gateway answers with), and that a
conversation keeps its id.
"""

from __future__ import annotations

import json

import httpx
import pytest

from docent.client import (
    AsyncDocentClient,
    DocentClient,
    DocentClientError,
    GatewayTimeout,
    GatewayUnreachable,
    StreamDone,
    StreamError,
    StreamFallback,
    StreamSources,
    StreamToken,
    parse_sse,
    query_body,
)
from docent.errors import ExitCode
from docent.types import Role, Turn

SOURCE = {"number": 1, "source": "https://x.example/a#b", "title": "A > B", "text": "t", "score": 0.5, "similarity": 0.6}
ROUTE = {"llm": "echo", "reason": "asked for"}


def answer_json(conversation_id: str = "c1", question: str = "q", **extra) -> dict:
    return {
        "answer_id": "a1", "question": question, "index": "docs", "answer": "yes [1]", "sources": [SOURCE],
        "llm": "echo", "route": ROUTE, "usage": {"prompt_tokens": 1, "completion_tokens": 2}, "cost": 0.0,
        "timings_ms": {"total": 1.0}, "conversation_id": conversation_id, "standalone_question": question, **extra,
    }


def sse(*events: tuple[str, dict]) -> str:
    return "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events) + ": ping\n\n"


STREAM = sse(
    ("sources", {"answer_id": "a1", "question": "q", "index": "docs", "route": ROUTE, "sources": [SOURCE],
                 "conversation_id": "c9", "standalone_question": "q alone"}),
    ("token", {"text": "yes "}),
    ("fallback", {"llm": "broken", "reason": "HTTP 500"}),
    ("token", {"text": "[1]"}),
    ("surprise", {"new": True}),  # an event this client does not know: skipped
    ("done", {"answer_id": "a1", "llm": "echo", "route": ROUTE, "usage": {"prompt_tokens": 1, "completion_tokens": 2},
              "cost": 0.1, "fallbacks": [{"llm": "broken", "reason": "HTTP 500"}], "timings_ms": {"total": 2.0},
              "cached": False, "abstained": False, "citations": [],
              "sources": [{"number": 1, "cited": True, "snippet": "t"}], "conversation_id": "c9",
              "standalone_question": "q alone", "later_field": 1}),
)


class Recorder:
    """A MockTransport handler answering from `replies` (path → (status, body, headers)), keeping the requests."""

    def __init__(self, replies: dict):
        self.replies, self.requests = replies, []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status, body, headers = self.replies[request.url.path]
        if isinstance(body, str):
            return httpx.Response(status, text=body, headers={"content-type": "text/event-stream", **headers})
        return httpx.Response(status, json=body, headers=headers)

    def bodies(self) -> list[dict]:
        return [json.loads(r.content) for r in self.requests]


def client(replies: dict, api_key: str | None = "dk_test") -> tuple[DocentClient, Recorder]:
    recorder = Recorder(replies)
    return DocentClient("http://gw/", api_key, transport=httpx.MockTransport(recorder)), recorder


def test_query_sends_the_question_options_and_key_and_returns_an_answer():
    docent, recorder = client({"/query": (200, answer_json(), {})})
    with docent:
        answer = docent.query("q", index="docs", llm="echo", num_chunks=None, history=[Turn(role=Role.USER, content="x")])
    assert answer.answer == "yes [1]" and answer.sources[0].number == 1 and answer.conversation_id == "c1"
    assert recorder.bodies() == [
        {"query": "q", "index": "docs", "options": {"llm": "echo"}, "history": [{"role": "user", "content": "x"}]}
    ]
    assert recorder.requests[0].headers["Authorization"] == "Bearer dk_test"
    assert str(recorder.requests[0].url) == "http://gw/query"


def test_no_key_no_authorization_header_and_a_plain_body():
    docent, recorder = client({"/query": (200, answer_json(), {})}, api_key=None)
    docent.query("q")
    assert "Authorization" not in recorder.requests[0].headers
    assert recorder.bodies() == [{"query": "q"}]
    assert query_body("q", conversation_id="c1", history=[{"role": "assistant", "content": "a"}]) == {
        "query": "q", "conversation_id": "c1", "history": [{"role": "assistant", "content": "a"}],
    }


def test_stream_yields_typed_events_in_order():
    docent, recorder = client({"/stream": (200, STREAM, {})})
    events = list(docent.stream("q", llm="extractive"))
    assert [type(e) for e in events] == [StreamSources, StreamToken, StreamFallback, StreamToken, StreamDone]
    sources, done = events[0], events[-1]
    assert sources.sources[0].title == "A > B" and sources.standalone_question == "q alone"
    assert "".join(e.text for e in events if isinstance(e, StreamToken)) == "yes [1]"
    assert done.sources[0].cited and done.cost == 0.1 and done.conversation_id == "c9"
    assert done.model_dump()["later_field"] == 1  # a newer gateway's field is kept
    assert recorder.bodies() == [{"query": "q", "options": {"llm": "extractive"}}]


def test_a_midstream_failure_is_an_error_event_that_becomes_the_error():
    docent, _ = client({"/stream": (200, sse(("error", {"status": 502, "message": "every LLM failed"})), {})})
    (event,) = list(docent.stream("q"))
    assert isinstance(event, StreamError)
    error = event.error()
    assert error.status == 502 and error.detail == "every LLM failed" and error.exit_code == ExitCode.RUNTIME


@pytest.mark.parametrize(
    ("status", "body", "headers", "detail", "exit_code", "retry_after"),
    [
        (401, {"detail": "missing API key"}, {}, "missing API key", ExitCode.USAGE, None),
        (404, {"detail": "no conversation 'x'"}, {}, "no conversation 'x'", ExitCode.USAGE, None),
        (422, {"detail": [{"loc": ["body", "options", "num_chunks"], "msg": "too large", "type": "x"}]}, {},
         "options.num_chunks: too large", ExitCode.USAGE, None),
        (429, {"detail": "slow down"}, {"Retry-After": "7"}, "slow down", ExitCode.USAGE, 7.0),
        (503, {"detail": "index loading"}, {"Retry-After": "5"}, "index loading", ExitCode.RUNTIME, 5.0),
        (500, "not JSON at all", {}, "not JSON at all", ExitCode.RUNTIME, None),
    ],
)
def test_error_responses_carry_status_detail_exit_code_and_retry_after(status, body, headers, detail, exit_code, retry_after):
    docent, _ = client({"/query": (status, body, headers), "/stream": (status, body, headers)})
    for call in (lambda: docent.query("q"), lambda: list(docent.stream("q"))):
        with pytest.raises(DocentClientError) as caught:
            call()
        error = caught.value
        assert (error.status, error.detail, error.exit_code, error.retry_after) == (status, detail, exit_code, retry_after)
        assert str(error) == f"HTTP {status}: {detail}"
        assert error.retryable == (status in (429, 503))


def test_an_unreachable_or_silent_gateway_is_a_runtime_failure():
    def refuse(request):
        raise httpx.ConnectError("connection refused")

    def silent(request):
        raise httpx.ReadTimeout("timed out")

    with DocentClient("http://gw", transport=httpx.MockTransport(refuse)) as docent, pytest.raises(GatewayUnreachable) as caught:
        docent.query("q")
    assert caught.value.status == 0 and caught.value.exit_code == ExitCode.RUNTIME
    assert "no gateway answering at http://gw" in str(caught.value)
    with DocentClient("http://gw", timeout=3, transport=httpx.MockTransport(silent)) as docent, pytest.raises(GatewayTimeout) as caught:
        list(docent.stream("q"))
    assert caught.value.status == 408 and caught.value.exit_code == ExitCode.RUNTIME
    assert "sent nothing for 3 s" in str(caught.value)


def test_feedback_posts_the_rating():
    docent, recorder = client({"/feedback": (201, {"feedback_id": 4, "answer_id": "a1"}, {})})
    receipt = docent.feedback("a1", "down", comment="wrong page")
    assert receipt.feedback_id == 4
    assert recorder.bodies() == [{"answer_id": "a1", "rating": "down", "comment": "wrong page"}]


def test_a_conversation_sends_the_id_its_first_answer_named():
    docent, recorder = client({"/query": (200, answer_json("c1"), {}), "/stream": (200, STREAM, {})})
    chat = docent.conversation(llm="extractive")
    assert chat.conversation_id is None
    chat.ask("first")
    chat.ask("second", num_chunks=3)
    assert [b.get("conversation_id") for b in recorder.bodies()] == [None, "c1"]
    assert recorder.bodies()[1]["options"] == {"llm": "extractive", "num_chunks": 3}
    list(chat.stream("third"))
    assert recorder.bodies()[2]["conversation_id"] == "c1" and chat.conversation_id == "c9"


async def test_the_async_client_queries_streams_and_keeps_a_conversation():
    recorder = Recorder({"/query": (200, answer_json("c1"), {}), "/stream": (200, STREAM, {}),
                         "/feedback": (201, {"feedback_id": 1, "answer_id": "a1"}, {})})
    async with AsyncDocentClient("http://gw", "k", transport=httpx.MockTransport(recorder)) as docent:
        chat = docent.conversation()
        assert (await chat.ask("first")).conversation_id == "c1"
        events = [event async for event in chat.stream("second")]
        assert isinstance(events[0], StreamSources) and isinstance(events[-1], StreamDone)
        assert chat.conversation_id == "c9"
        assert (await docent.feedback("a1", "up")).feedback_id == 1
    assert [b.get("conversation_id") for b in recorder.bodies()[:2]] == [None, "c1"]


def test_parse_sse_joins_data_lines_and_skips_comments():
    lines = [": ping", "event: token", 'data: {"text":', 'data: "a"}', "", "data: [1]"]
    assert list(parse_sse(lines)) == [("token", {"text": "a"}), ("message", [1])]
