"""Conversations on the real Serve application: follow-ups by conversation_id or history,
made to stand alone before retrieval (offline here; by the test server's `condense` model
in-process), and the OpenAI-compatible endpoint driven by the official `openai` client."""

from __future__ import annotations

import uuid

import httpx
import openai
import pytest

from docent.client import parse_sse
from docent.db import connect
from docent.settings import Settings
from services.gateway.app import create_app
from services.gateway.keys import create_key
from services.gateway.local import close_local_pipeline, open_local_pipeline
from tests.gateway_fixtures import answering_llms, serve_docent
from tests.llm_server import condense_reply

pytestmark = pytest.mark.integration

FIRST = "How many times is a failed job retried?"
FOLLOW_UP = "and how do I turn that off?"
RETRIES_PAGE = "guide/configuration.html#retries-and-backoff"
CONDENSE_PRICE = 4.0  # $ per million tokens, prompt and sampled: the condensing call's cost shows


@pytest.fixture(scope="module")
def gateway(ray_local, llm_server, tmp_path_factory):
    with serve_docent(
        tmp_path_factory.mktemp("conversations"),
        auth_enabled=True,
        generation={"llms": answering_llms(llm_server.base_url)},
        conversation={"condenser": "offline"},
    ) as served:
        yield served


async def _new_key() -> str:
    conn = await connect(Settings())
    try:
        return await create_key(conn, f"conv-{uuid.uuid4().hex[:8]}", ("query", "feedback"))
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def key(gateway) -> str:
    import asyncio

    return asyncio.run(_new_key())


@pytest.fixture
async def http(gateway, key):
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=gateway.url, timeout=60, headers=headers) as client:
        yield client


async def _ask(http: httpx.AsyncClient, question: str, **extra) -> dict:
    response = await http.post("/query", json={"query": question, "options": {"llm": "extractive"}, **extra})
    assert response.status_code == 200, response.text
    return response.json()


# --- /query ---------------------------------------------------------------------------


async def test_a_follow_up_by_conversation_id_is_answered_about_the_page_the_conversation_is_on(http):
    alone = await _ask(http, FOLLOW_UP)
    first = await _ask(http, FIRST)
    follow_up = await _ask(http, FOLLOW_UP, conversation_id=first["conversation_id"])

    assert first["conversation_id"] and first["standalone_question"] == FIRST
    assert follow_up["conversation_id"] == first["conversation_id"]
    assert follow_up["question"] == FOLLOW_UP
    assert FIRST in follow_up["standalone_question"]
    assert RETRIES_PAGE in follow_up["sources"][0]["source"]
    assert RETRIES_PAGE not in alone["sources"][0]["source"]  # asked alone, it finds something else
    assert alone["conversation_id"] != first["conversation_id"]


async def test_a_question_that_stands_alone_is_left_alone_in_a_conversation(http):
    first = await _ask(http, FIRST)
    standalone = "How do I install the Orbit client library with pip?"
    second = await _ask(http, standalone, conversation_id=first["conversation_id"])
    assert second["standalone_question"] == standalone


async def test_history_sent_by_the_client_is_read_like_a_kept_conversation(http):
    history = [{"role": "user", "content": FIRST}, {"role": "assistant", "content": "Up to max_retries times [1]."}]
    follow_up = await _ask(http, FOLLOW_UP, history=history)
    assert FIRST in follow_up["standalone_question"]
    assert RETRIES_PAGE in follow_up["sources"][0]["source"]


async def test_the_same_follow_up_in_two_conversations_is_two_questions_to_the_cache(http):
    first = await _ask(http, FIRST)
    other = await _ask(http, "What does job_timeout do?")
    in_first = await _ask(http, FOLLOW_UP, conversation_id=first["conversation_id"])
    in_other = await _ask(http, FOLLOW_UP, conversation_id=other["conversation_id"])
    assert in_first["standalone_question"] != in_other["standalone_question"]
    assert in_first["sources"][0]["source"] != in_other["sources"][0]["source"]
    assert not in_other["cached"]
    # The same follow-up of the same question, in a conversation the client keeps: the first answer's replay.
    again = await _ask(http, FOLLOW_UP, history=[{"role": "user", "content": FIRST}])
    assert again["cached"] and again["conversation_id"] not in (first["conversation_id"], in_first["answer_id"])
    assert again["question"] == FOLLOW_UP and again["standalone_question"] == in_first["standalone_question"]


async def test_another_keys_or_an_unknown_conversation_is_404_and_both_kinds_of_history_422(gateway, http):
    first = await _ask(http, FIRST)
    other_key = await _new_key()
    async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as stranger:
        response = await stranger.post(
            "/query", json={"query": FOLLOW_UP, "conversation_id": first["conversation_id"]},
            headers={"Authorization": f"Bearer {other_key}"},
        )
    assert response.status_code == 404 and "conversation" in response.json()["detail"]
    unknown = await http.post("/query", json={"query": FOLLOW_UP, "conversation_id": "no-such-conversation"})
    assert unknown.status_code == 404
    both = await http.post("/query", json={
        "query": FOLLOW_UP, "conversation_id": first["conversation_id"], "history": [{"role": "user", "content": FIRST}],
    })
    assert both.status_code == 422 and "not both" in both.text
    bad_role = await http.post("/query", json={"query": FOLLOW_UP, "history": [{"role": "system", "content": "x"}]})
    assert bad_role.status_code == 422


async def test_a_stream_by_get_carries_the_conversation_and_the_standalone_question(http):
    first = await _ask(http, FIRST)
    params = {"query": FOLLOW_UP, "conversation_id": first["conversation_id"], "llm": "extractive"}
    async with http.stream("GET", "/stream", params=params) as response:
        assert response.status_code == 200
        events = dict(parse_sse([line async for line in response.aiter_lines()]))
    for event in ("sources", "done"):
        assert events[event]["conversation_id"] == first["conversation_id"]
        assert FIRST in events[event]["standalone_question"]
    assert RETRIES_PAGE in events["sources"]["sources"][0]["source"]
    missing = await http.get("/stream", params={"query": FOLLOW_UP, "conversation_id": "gone"})
    assert missing.status_code == 404


async def test_a_third_turn_reads_the_second_as_it_was_searched_for(http):
    first = await _ask(http, "What does job_timeout do?")
    second = await _ask(http, "and what happens after that?", conversation_id=first["conversation_id"])
    third = await _ask(http, "why?", conversation_id=first["conversation_id"])
    assert "and what happens after that?" in third["standalone_question"]  # the last question…
    assert "What does job_timeout do?" in third["standalone_question"]  # …and the one the chain began with
    assert second["standalone_question"] not in third["standalone_question"]  # not nested ever deeper


# --- the OpenAI-compatible endpoint ------------------------------------------------------


@pytest.fixture
def client(gateway, key) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)


def test_models_are_the_servable_indexes(client, gateway):
    assert gateway.index in [model.id for model in client.models.list()]


def test_the_openai_client_holds_a_streamed_multi_turn_conversation(client, gateway):
    messages = [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": FIRST}]
    first = client.chat.completions.create(model=gateway.index, messages=messages)
    text = first.choices[0].message.content
    assert first.model == gateway.index and first.choices[0].finish_reason == "stop"
    assert "[1]" in text and "**Sources**" in text and "](https://orbit.example/docs/" in text
    extra = first.model_extra
    assert extra["answer_id"] and extra["sources"][0]["source"].startswith("https://orbit.example/docs/")
    assert first.usage.total_tokens > 0

    messages += [{"role": "assistant", "content": text}, {"role": "user", "content": FOLLOW_UP}]
    stream = client.chat.completions.create(
        model=gateway.index, messages=messages, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed.startswith("Ray Serve scales deployments [1].") and "**Sources**" in streamed
    finish = next(c for c in chunks if c.choices and c.choices[0].finish_reason == "stop")
    assert FIRST in finish.model_extra["standalone_question"]
    assert RETRIES_PAGE in finish.model_extra["sources"][0]["source"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


async def test_chat_answers_go_to_the_answer_log(client, gateway):
    completion = client.chat.completions.create(model=gateway.index, messages=[{"role": "user", "content": FIRST}])
    conn = await connect(Settings())
    try:
        row = await conn.fetchrow("SELECT question, conversation_id FROM answers WHERE id = $1",
                                  completion.model_extra["answer_id"])
    finally:
        await conn.close()
    assert row["question"] == FIRST and row["conversation_id"] == completion.model_extra["conversation_id"]


def test_chat_errors_take_openais_shape(client, gateway):
    with pytest.raises(openai.NotFoundError) as unknown:
        client.chat.completions.create(model="no-such-index", messages=[{"role": "user", "content": FIRST}])
    assert "no-such-index" in unknown.value.message
    with pytest.raises(openai.UnprocessableEntityError) as last:
        client.chat.completions.create(model=gateway.index, messages=[{"role": "assistant", "content": "Hi"}])
    assert "last message" in last.value.message
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(model=gateway.index, messages=[])
    anonymous = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="dk_wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        anonymous.chat.completions.create(model=gateway.index, messages=[{"role": "user", "content": FIRST}])


# --- an LLM condenser (in-process, over the same index) ---------------------------------


async def test_an_llm_condenses_the_follow_up_and_its_cost_is_counted(gateway, llm_server):
    llms = answering_llms(llm_server.base_url)
    condenser = {**llms[0], "name": "condenser", "model": "condense", "prompt_price": CONDENSE_PRICE,
                 "sampled_price": CONDENSE_PRICE}
    free_echo = {**llms[0], "prompt_price": 0.0, "sampled_price": 0.0}
    settings = Settings(
        index=gateway.index, auth_enabled=False,
        generation={"llms": [free_echo, condenser]},
        conversation={"condense_llm": "condenser"},
    )
    pipeline = await open_local_pipeline(settings)
    try:
        app = create_app(pipeline)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as http:
            history = [{"role": "user", "content": FIRST}, {"role": "assistant", "content": "Three times [1]."}]
            body = {"query": FOLLOW_UP, "history": history, "options": {"llm": "echo"}}
            answer = (await http.post("/query", json=body)).json()
            alone = (await http.post("/query", json={"query": FIRST, "options": {"llm": "echo"}})).json()
    finally:
        await close_local_pipeline(pipeline)
    prompt = f"Conversation:\nUser: {FIRST}\nAssistant: Three times [1].\n\nLast question: {FOLLOW_UP}"
    assert answer["standalone_question"] == condense_reply(prompt).removeprefix("Standalone question: ")
    assert answer["cost"] > 0 and "condense" in answer["timings_ms"]  # echo is free: the cost is the condenser's
    assert alone["cost"] == 0 and "condense" not in alone["timings_ms"]  # no history: nothing condensed
    assert RETRIES_PAGE in answer["sources"][0]["source"]
