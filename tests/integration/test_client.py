"""docent.client against the real Serve application (real PostgreSQL, the test LLM server, auth on):
answers, streamed events, feedback, conversations kept by id, the errors the gateway answers
with, and `docent query --conversation` on top of it."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from docent.client import (
    AsyncDocentClient,
    DocentClient,
    DocentClientError,
    GatewayUnreachable,
    StreamDone,
    StreamSources,
    StreamToken,
)
from docent.db import connect
from docent.errors import ExitCode
from docent.settings import Settings
from docent.types import Answer, Role, Turn
from services.gateway.keys import create_key
from tests.conftest import ROOT
from tests.gateway_fixtures import answering_llms, free_port, serve_docent

pytestmark = pytest.mark.integration

FIRST = "How many times is a failed job retried?"
FOLLOW_UP = "and how do I turn that off?"
RETRIES_PAGE = "guide/configuration.html#retries-and-backoff"


@pytest.fixture(scope="module")
def gateway(ray_local, llm_server, tmp_path_factory):
    with serve_docent(
        tmp_path_factory.mktemp("client"),
        auth_enabled=True,
        generation={"llms": answering_llms(llm_server.base_url)},
        conversation={"condenser": "offline"},
    ) as served:
        yield served


@pytest.fixture(scope="module")
async def key(gateway) -> str:
    conn = await connect(Settings())
    try:
        return await create_key(conn, f"client-{uuid.uuid4().hex[:8]}", ("query", "feedback"))
    finally:
        await conn.close()


@pytest.fixture
def docent(gateway, key):
    with DocentClient(gateway.url, key, timeout=60) as client:
        yield client


def test_query_returns_an_answer_with_sources_and_a_new_conversation(docent, gateway):
    answer = docent.query(FIRST, llm="extractive", index=gateway.index)
    assert isinstance(answer, Answer) and answer.llm == "extractive" and answer.index == gateway.index
    assert answer.question == FIRST and answer.standalone_question == FIRST
    assert answer.conversation_id and answer.answer_id
    assert any(RETRIES_PAGE in s.source for s in answer.sources)


def test_stream_yields_sources_tokens_then_done(docent):
    events = list(docent.stream(FIRST, llm="echo"))
    sources, done = events[0], events[-1]
    assert isinstance(sources, StreamSources) and isinstance(done, StreamDone)
    assert sources.answer_id == done.answer_id and sources.conversation_id == done.conversation_id
    assert sources.sources and sources.standalone_question == FIRST
    text = "".join(e.text for e in events if isinstance(e, StreamToken))
    assert text.strip() and done.llm == "echo" and done.usage.completion_tokens > 0
    assert [s.number for s in done.sources] == [s.number for s in sources.sources]


async def test_feedback_is_recorded(docent):
    answer = docent.query(FIRST, llm="extractive")
    receipt = docent.feedback(answer.answer_id, "up", comment="right page")
    assert receipt.answer_id == answer.answer_id
    conn = await connect(Settings())
    try:
        row = await conn.fetchrow("SELECT rating, comment FROM feedback WHERE id = $1", receipt.feedback_id)
    finally:
        await conn.close()
    assert (row["rating"], row["comment"]) == ("up", "right page")


def test_a_conversation_keeps_its_id_and_reads_the_follow_up_with_it(docent):
    chat = docent.conversation(llm="extractive")
    first = chat.ask(FIRST)
    follow_up = chat.ask(FOLLOW_UP)
    assert chat.conversation_id == first.conversation_id == follow_up.conversation_id
    assert follow_up.question == FOLLOW_UP and FIRST in follow_up.standalone_question
    assert RETRIES_PAGE in follow_up.sources[0].source
    streamed = list(chat.stream(FOLLOW_UP))
    assert streamed[0].conversation_id == first.conversation_id and isinstance(streamed[-1], StreamDone)

    again = docent.conversation(first.conversation_id, llm="extractive").ask(FOLLOW_UP)  # continued by id
    assert again.conversation_id == first.conversation_id


def test_history_kept_by_the_caller_is_read_like_a_kept_conversation(docent):
    history = [Turn(role=Role.USER, content=FIRST), {"role": "assistant", "content": "Up to max_retries times [1]."}]
    follow_up = docent.query(FOLLOW_UP, history=history, llm="extractive")
    assert FIRST in follow_up.standalone_question and RETRIES_PAGE in follow_up.sources[0].source


async def test_the_async_client_holds_a_streamed_conversation(gateway, key):
    async with AsyncDocentClient(gateway.url, key, timeout=60) as docent:
        chat = docent.conversation(llm="extractive")
        first = await chat.ask(FIRST)
        events = [event async for event in chat.stream(FOLLOW_UP)]
        done = events[-1]
        assert isinstance(done, StreamDone) and done.conversation_id == first.conversation_id
        assert FIRST in done.standalone_question
        receipt = await docent.feedback(done.answer_id, "down")
        assert receipt.answer_id == done.answer_id


def test_errors_carry_the_gateway_s_status_and_message(docent, gateway):
    with DocentClient(gateway.url) as keyless, pytest.raises(DocentClientError) as caught:
        keyless.query(FIRST)
    assert caught.value.status == 401 and caught.value.exit_code == ExitCode.USAGE and caught.value.detail

    with pytest.raises(DocentClientError) as caught:
        list(docent.stream(FIRST, num_chunks=0))
    assert caught.value.status == 422 and "num_chunks" in caught.value.detail

    with pytest.raises(DocentClientError) as caught:
        docent.query(FIRST, conversation_id="x", history=[{"role": "user", "content": FIRST}])
    assert caught.value.status == 422 and "not both" in caught.value.detail

    with pytest.raises(DocentClientError) as caught:
        docent.query(FOLLOW_UP, conversation_id="no-such-conversation")
    assert caught.value.status == 404 and "conversation" in caught.value.detail

    with pytest.raises(DocentClientError) as caught:
        docent.feedback("no-such-answer", "up")
    assert caught.value.status == 404

    with DocentClient(f"http://127.0.0.1:{free_port()}") as nowhere, pytest.raises(GatewayUnreachable) as caught:
        nowhere.query(FIRST)
    assert caught.value.status == 0 and caught.value.exit_code == ExitCode.RUNTIME


def docent_query(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cli", "query", *args], capture_output=True, text=True, cwd=ROOT, timeout=120, check=False
    )


def test_docent_query_continues_a_conversation(gateway, key):
    common = ["--url", gateway.url, "--api-key", key, "--llm", "extractive"]
    first = docent_query(FIRST, *common)
    assert first.returncode == 0, first.stderr
    said = " ".join(first.stdout.split())
    assert "conversation: " in said and "searched for" not in said  # a first question stands alone
    conversation_id = said.split("conversation: ", 1)[1].split()[0]
    assert f"continue with --conversation {conversation_id}" in said

    for streamed in ([], ["--stream"]):
        follow_up = docent_query(FOLLOW_UP, *common, "--conversation", conversation_id, *streamed)
        assert follow_up.returncode == 0, follow_up.stderr
        said = " ".join(follow_up.stdout.split())
        assert "searched for: " in said and FIRST in said and f"conversation: {conversation_id}" in said
        assert RETRIES_PAGE in follow_up.stdout.replace("\n", "")

    unknown = docent_query(FOLLOW_UP, *common, "--conversation", "no-such-conversation")
    assert unknown.returncode == 2 and "conversation" in unknown.stderr and "Traceback" not in unknown.stderr
