"""The generator's chain of LLMs against a real OpenAI-compatible server (tests/llm_server.py)."""

import asyncio
import re
import socket
import time
import uuid

import pytest

from docent.embedding.model import load_embedder
from docent.llm import LLMFailure
from docent.settings import EmbeddingSettings, GenerationSettings, LLMSettings
from docent.tokenizer import load_tokenizer
from docent.types import SearchHit, UnknownLLM, Usage
from services.generator.extractive import ExtractiveGenerator, passage_settings
from services.generator.generator import (
    DoneEvent,
    FallbackEvent,
    GenerationFailed,
    Generator,
    TokenEvent,
)
from services.generator.prompt import build_messages

ABORT_SEEN_WITHIN_S = 5.0

HITS = [
    SearchHit(
        rank=i, score=1.0, source=f"https://docs.ray.io/en/master/serve/p{i}.html", text=text, chunk_id=i,
        page_title="Ray Serve", section_title=f"Section {i}",
    )
    for i, text in enumerate(
        [
            "Ray Serve adds replicas when the number of ongoing requests per replica grows past the target.",
            "Replicas are removed again after traffic drops and the downscale delay has passed.",
            "Ray Data reads Parquet files from S3 and splits datasets into blocks for parallel processing.",
        ],
        start=1,
    )
]


@pytest.fixture(scope="module")
def extractive():
    return ExtractiveGenerator(load_embedder(EmbeddingSettings(device="cpu")), passage_settings(GenerationSettings()))


@pytest.fixture
async def make_generator():
    """Builds generators and closes their HTTP clients after the test."""
    built: list[Generator] = []

    def make(llms, extractive=None, **generation) -> Generator:
        generator = Generator(GenerationSettings(llms=llms, **generation), extractive)
        built.append(generator)
        return generator

    yield make
    for generator in built:
        await generator.aclose()


def llm(server, name: str, model: str, **settings) -> LLMSettings:
    return LLMSettings(name=name, model=model, base_url=server.base_url, **settings)


def question() -> str:
    """A question no other test asks, to find this test's requests on the shared server."""
    return f"When does Ray Serve add replicas? ({uuid.uuid4().hex[:8]})"


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


async def collect(events) -> list:
    return [event async for event in events]


def text_of(events) -> str:
    return "".join(e.text for e in events if isinstance(e, TokenEvent))


def done_of(events) -> DoneEvent:
    assert isinstance(events[-1], DoneEvent)
    return events[-1]


async def test_streams_the_answer_with_usage_and_cost(llm_server, make_generator):
    settings = llm(llm_server, "echo-llm", "echo", prompt_price=3.0, sampled_price=15.0, max_tokens=77)
    asked = question()
    events = await collect(make_generator([settings], temperature=0.25).generate(asked, HITS, "echo-llm"))
    done = done_of(events)
    [request] = llm_server.requests_about(asked)

    assert text_of(events) == "Ray Serve scales deployments [1]. (saw 3 sources)"
    assert sum(isinstance(e, TokenEvent) for e in events) > 1  # streamed, not one block
    assert done.llm == "echo-llm" and done.sources_used == 3
    assert done.usage.completion_tokens == sum(isinstance(e, TokenEvent) for e in events)  # the server's count
    assert done.usage.prompt_tokens > 0
    assert done.cost == pytest.approx((3.0 * done.usage.prompt_tokens + 15.0 * done.usage.completion_tokens) / 1e6)
    assert request["stream"] is True and request["stream_options"] == {"include_usage": True}
    assert request["temperature"] == 0.25 and request["max_tokens"] == 77 and request["model"] == "echo"
    assert request["messages"][0] == {"role": "system", "content": GenerationSettings().system_prompt}


async def test_counts_usage_itself_when_the_server_does_not(llm_server, make_generator):
    asked = question()
    events = await collect(make_generator([llm(llm_server, "quiet", "echo-no-usage")]).generate(asked, HITS, "quiet"))
    [request] = llm_server.requests_about(asked)
    tokenizer = load_tokenizer()

    assert done_of(events).usage == Usage(
        prompt_tokens=sum(tokenizer.count(m["content"]) for m in request["messages"]),
        completion_tokens=tokenizer.count(text_of(events)),
    )


async def test_the_context_is_trimmed_to_its_share_of_the_context_length(llm_server, make_generator):
    settings = llm(llm_server, "small", "echo", context_length=160)
    asked = question()
    events = await collect(make_generator([settings], context_fraction=0.5).generate(asked, HITS, "small"))
    expected = build_messages(GenerationSettings().system_prompt, asked, HITS, 80, load_tokenizer())

    assert 0 < expected.sources_used < len(HITS)
    assert done_of(events).sources_used == expected.sources_used
    assert f"(saw {expected.sources_used} sources)" in text_of(events)
    assert llm_server.requests_about(asked)[0]["messages"] == expected.messages


async def test_a_rate_limited_request_is_retried_by_the_same_llm(llm_server, make_generator):
    settings = [llm(llm_server, "flaky", "flaky-429", max_retries=1), llm(llm_server, "backup", "echo")]
    asked = question()
    events = await collect(make_generator(settings).generate(asked, HITS, "flaky"))

    assert not any(isinstance(e, FallbackEvent) for e in events)
    assert done_of(events).llm == "flaky"
    assert [r["model"] for r in llm_server.requests_about(asked)] == ["flaky-429", "flaky-429"]


async def test_a_server_error_falls_back_to_the_next_llm(llm_server, make_generator):
    settings = [llm(llm_server, "broken", "always-500", max_retries=1), llm(llm_server, "backup", "echo")]
    asked = question()
    events = await collect(make_generator(settings).generate(asked, HITS, "broken"))

    assert events[0] == FallbackEvent(llm="broken", reason="HTTP 500 after 1 retry: the model crashed")
    assert done_of(events).llm == "backup"
    assert "[1]" in text_of(events)
    assert [r["model"] for r in llm_server.requests_about(asked)] == ["always-500", "always-500", "echo"]


async def test_a_stream_without_any_choice_falls_back(llm_server, make_generator):
    settings = [llm(llm_server, "mute", "no-choices"), llm(llm_server, "backup", "echo")]
    events = await collect(make_generator(settings).generate(question(), HITS, "mute"))

    assert events[0] == FallbackEvent(llm="mute", reason="the stream ended without an answer")
    assert done_of(events).llm == "backup"


async def test_a_stalled_stream_times_out_then_the_answer_is_extractive(llm_server, make_generator, extractive):
    settings = [llm(llm_server, "stuck", "slow", timeout_s=1, max_retries=0)]
    started = time.monotonic()
    events = await collect(make_generator(settings, extractive).generate(question(), HITS, "stuck"))
    done = done_of(events)
    tokens = [e for e in events if isinstance(e, TokenEvent)]

    assert time.monotonic() - started < 10  # the stall was cut by the timeout, not waited out
    assert events[0] == FallbackEvent(llm="stuck", reason="timed out after 1 s")
    assert done.llm == "extractive" and done.cost == 0.0 and done.sources_used == len(HITS)
    assert done.usage == Usage(prompt_tokens=0, completion_tokens=len(tokens))
    assert text_of(events).startswith(f"{HITS[0].text} [1]")  # the most relevant sentence first, cited
    assert re.search(r"\[\d\]$", text_of(events))


async def test_a_failure_after_part_of_the_answer_is_not_papered_over(llm_server, make_generator, extractive):
    settings = [
        llm(llm_server, "halfway", "stalls-mid-answer", timeout_s=1, max_retries=0),
        llm(llm_server, "backup", "echo"),
    ]
    received = []
    with pytest.raises(LLMFailure) as failure:
        async for event in make_generator(settings, extractive).generate(question(), HITS, "halfway"):
            received.append(event)

    assert received == [TokenEvent("Ray ")]
    assert failure.value.llm == "halfway" and failure.value.reason == "timed out after 1 s"


async def test_an_answer_not_streamed_falls_back_even_after_a_failure_midway(llm_server, make_generator, extractive):
    settings = [
        llm(llm_server, "halfway", "stalls-mid-answer", timeout_s=1, max_retries=0),
        llm(llm_server, "backup", "echo"),
    ]
    events = await make_generator(settings, extractive).generate_all(question(), HITS, "halfway")

    assert events[0] == FallbackEvent(llm="halfway", reason="timed out after 1 s, midway through its answer")
    assert done_of(events).llm == "backup"
    assert text_of(events).startswith("Ray Serve scales deployments [1].")  # the half-answer is not in it


async def test_when_every_llm_fails_each_reason_is_given(llm_server, make_generator):
    settings = [
        llm(llm_server, "broken", "always-500", max_retries=0),
        LLMSettings(name="gone", model="echo", base_url=closed_port_url(), max_retries=0),
    ]
    generator = make_generator(settings, extractive=None, extractive_fallback=True)
    received = []
    with pytest.raises(GenerationFailed) as failed:
        async for event in generator.generate(question(), HITS, "broken"):
            received.append(event)

    assert received == [FallbackEvent(llm="broken", reason="HTTP 500: the model crashed")]
    assert [(f.llm, f.reason) for f in failed.value.failures] == [
        ("broken", "HTTP 500: the model crashed"),
        ("gone", f"connection to {settings[1].base_url} failed (connection refused)"),
    ]
    assert "broken: HTTP 500" in str(failed.value) and "gone: connection to" in str(failed.value)


async def test_extractive_without_a_relevant_sentence_says_so(make_generator, extractive):
    short = [HITS[0].model_copy(update={"text": "Too short."})]
    events = await collect(make_generator([], extractive).generate("anything?", short, "extractive"))

    not_covered = "The documentation doesn't seem to cover this."
    assert text_of(events) == not_covered
    assert done_of(events).usage.completion_tokens == len(not_covered.split())
    assert done_of(events).abstained and done_of(events).citations == []


def test_the_chain_is_chosen_then_fallbacks_then_extractive(llm_server, extractive):
    llms = [llm(llm_server, name, "echo") for name in ("a", "b", "c")]

    def chain(chosen, extractive=extractive, **generation):
        return Generator(GenerationSettings(llms=llms, **generation), extractive).chain(chosen)

    assert chain("b") == ["b", "a", "c", "extractive"]
    assert chain("b", fallback=["c", "b", "c"]) == ["b", "c", "extractive"]
    assert chain("a", fallback=[]) == ["a", "extractive"]
    assert chain("a", extractive_fallback=False) == ["a", "b", "c"]
    assert chain("a", extractive=None) == ["a", "b", "c"]
    assert chain("extractive") == ["extractive"]


async def test_an_unknown_llm_is_refused_with_the_known_names(llm_server, make_generator, extractive):
    generator = make_generator([llm(llm_server, "a", "echo"), llm(llm_server, "b", "echo")], extractive)

    with pytest.raises(UnknownLLM, match=r"'gpt-9'.*a, b, extractive"):
        await collect(generator.generate("q?", HITS, "gpt-9"))
    with pytest.raises(UnknownLLM, match=r"known: a$"):
        make_generator([llm(llm_server, "a", "echo")], extractive=None).chain("extractive")
    with pytest.raises(ValueError, match="fallback"):
        make_generator([llm(llm_server, "a", "echo")], fallback=["nope"])


def test_cost_is_priced_per_million_tokens(llm_server):
    settings = GenerationSettings(llms=[llm(llm_server, "priced", "echo", prompt_price=2.5, sampled_price=10.0)])
    generator = Generator(settings, extractive=None)

    assert generator.cost("priced", Usage(prompt_tokens=1000, completion_tokens=500)) == pytest.approx(0.0075)
    assert generator.cost("extractive", Usage(prompt_tokens=1000, completion_tokens=500)) == 0.0


async def test_cancelling_the_consumer_closes_the_llm_stream(llm_server, make_generator):
    generator = make_generator([llm(llm_server, "slowpoke", "tokens-slow")])
    asked = question()
    first_tokens = asyncio.Event()

    async def consume():
        count = 0
        async for event in generator.generate(asked, HITS, "slowpoke"):
            count += isinstance(event, TokenEvent)
            if count == 3:
                first_tokens.set()

    consumer = asyncio.create_task(consume())
    await asyncio.wait_for(first_tokens.wait(), ABORT_SEEN_WITHIN_S)
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer

    deadline = time.monotonic() + ABORT_SEEN_WITHIN_S
    while asked not in " ".join(llm_server.aborted_streams) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert any(asked in aborted for aborted in llm_server.aborted_streams)


async def test_coalesce_batches_what_is_ready_and_raises_after_the_events_before_the_error():
    from services.generator.generator import coalesce

    async def events():
        for text in ("a ", "b ", "c "):
            yield TokenEvent(text)
        await asyncio.sleep(0.05)
        yield TokenEvent("d ")
        raise LLMFailure("x", "stalled")

    batches = []
    with pytest.raises(LLMFailure, match="stalled"):
        async for batch in coalesce(events()):
            batches.append([e.text for e in batch])
    assert batches == [["a ", "b ", "c "], ["d "]]
