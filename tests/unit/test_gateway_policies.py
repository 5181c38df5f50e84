"""The gateway's policies that need no server: key format, cache keys, the in-process limiter and cache."""

from __future__ import annotations

import asyncio

import pytest
from ray.exceptions import ActorDiedError, ActorUnavailableError

from docent.settings import CacheSettings, RateLimitSettings, Settings
from docent.text import normalise_question
from docent.types import Answer, QueryOptions, QueryRequest, Route, Usage
from services.gateway.asking import classify
from services.gateway.cache import LocalAnswerCache, cache_key, configuration_fingerprint
from services.gateway.keys import _prefix_of, hash_key
from services.gateway.limits import LocalRateLimiter


def test_a_key_is_found_by_its_prefix_even_when_its_secret_holds_underscores():
    assert _prefix_of("dk_0a1b2c3d_se_cr_et") == "0a1b2c3d"
    for malformed in ("", "dk_", "dk__secret", "dk_0a1b2c3d_", "xx_0a1b2c3d_secret", "0a1b2c3d"):
        assert _prefix_of(malformed) is None, malformed
    assert hash_key("dk_a_b") != hash_key("dk_a_c") and len(hash_key("dk_a_b")) == 64


def test_questions_differing_in_case_spacing_or_final_punctuation_share_a_cache_key():
    assert normalise_question("  How do I  scale Serve?? ") == normalise_question("how do i scale serve") == "how do i scale serve"
    fingerprint = configuration_fingerprint(Settings())
    ask = lambda q, **o: cache_key(fingerprint, 3, QueryRequest(query=q, options=QueryOptions(**o)))
    assert ask("How do I scale Serve?") == ask("how do i   scale serve")
    assert ask("How do I scale Serve?") != ask("How do I scale Serve?", llm="extractive")
    assert ask("How do I scale Serve?") != cache_key(fingerprint, 4, QueryRequest(query="How do I scale Serve?"))


def test_anything_that_shapes_an_answer_changes_the_fingerprint_and_placement_does_not():
    base = configuration_fingerprint(Settings())
    assert configuration_fingerprint(Settings(generation={"system_prompt": "Answer in French."})) != base
    assert configuration_fingerprint(Settings(retrieval={"num_chunks": 5})) != base
    assert configuration_fingerprint(Settings(serving={"port": 9000}, redis_url="redis://elsewhere")) == base


async def test_the_local_limiter_allows_exactly_the_limit_in_a_window_then_says_when_to_retry():
    limiter = LocalRateLimiter(RateLimitSettings(requests=3, window_s=0.5))
    decisions = await asyncio.gather(*(limiter.check("key:a") for _ in range(5)))
    assert [d.allowed for d in decisions] == [True, True, True, False, False]
    assert decisions[-1].retry_after_s == 1  # rounded up to whole seconds, as Retry-After is
    assert (await limiter.check("key:b")).allowed  # each caller has a window of its own
    await asyncio.sleep(0.55)
    assert (await limiter.check("key:a")).allowed


def _answer(text: str) -> Answer:
    return Answer(
        answer_id="a1", question="q", index="i", answer=text, sources=[], llm="echo",
        route=Route(llm="echo", reason="test"), usage=Usage(), cost=0.0, timings_ms={"total": 1.0},
    )


async def test_the_local_cache_forgets_after_its_ttl_and_evicts_the_least_recently_used():
    cache = LocalAnswerCache(CacheSettings(ttl_s=1, local_entries=2))
    await cache.put("i", "k1", _answer("one"))
    await cache.put("i", "k2", _answer("two"))
    assert (await cache.get("i", "k1")).answer == "one"  # k1 is now the most recent
    await cache.put("i", "k3", _answer("three"))
    assert await cache.get("i", "k2") is None and await cache.get("i", "k3") is not None
    assert await cache.get("other-index", "k1") is None
    await asyncio.sleep(1.05)
    assert await cache.get("i", "k1") is None


@pytest.mark.parametrize("requests", [0, -1])
def test_a_limit_below_one_request_is_a_settings_error(requests):
    with pytest.raises(ValueError, match="requests"):
        Settings(gateway={"rate_limit": {"requests": requests}})


@pytest.mark.parametrize("lost", [
    ActorUnavailableError("the actor is restarting", None),
    ActorDiedError(),
])
def test_a_replica_lost_midway_is_a_503_with_retry_after_not_a_500(lost):
    error = classify(lost, retry_after=3)
    assert error.http_status == 503 and error.retryable and error.retry_after == 3
    assert "restarting" in str(error)


def _metric(metrics, name: str, **labels) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_a_client_hanging_up_is_counted_as_499_not_as_an_error():
    from services.gateway.app import CLIENT_CLOSED_REQUEST, RequestMetrics
    from services.gateway.metrics import GatewayMetrics

    async def slow_app(scope, receive, send):
        await asyncio.sleep(60)

    async def failing_app(scope, receive, send):
        raise RuntimeError("a bug")

    async def main():
        metrics = GatewayMetrics()
        scope = {"type": "http"}
        hung_up = asyncio.create_task(RequestMetrics(slow_app, metrics)(scope, None, None))
        await asyncio.sleep(0.01)
        hung_up.cancel()  # what Serve does when the client disconnects
        with pytest.raises(asyncio.CancelledError):
            await hung_up
        with pytest.raises(RuntimeError):
            await RequestMetrics(failing_app, metrics)(scope, None, None)
        return metrics

    metrics = asyncio.run(main())
    assert _metric(metrics, "docent_requests_total", endpoint="unmatched", status=str(CLIENT_CLOSED_REQUEST)) == 1
    assert _metric(metrics, "docent_errors_total", endpoint="unmatched", kind=str(CLIENT_CLOSED_REQUEST)) == 0
    assert _metric(metrics, "docent_errors_total", endpoint="unmatched", kind="500") == 1


def test_a_request_past_its_deadline_is_a_503_with_retry_after():
    from services.gateway.asking import Asking

    class Stalled:
        settings = Settings(serving={"request_timeout_s": 0.05, "retry_after_s": 7})

        async def condense(self, request, turns):
            await asyncio.sleep(60)  # a replica being replaced

    asking = Asking(Stalled(), policies=None, metrics=None, caller=None)
    with pytest.raises(Exception) as raised:
        asyncio.run(asking.answer(QueryRequest(query="how do I scale serve?")))
    assert raised.value.http_status == 503 and raised.value.retry_after == 7
    assert "request_timeout_s (0.05 s)" in str(raised.value)


def test_a_stream_whose_first_words_miss_the_deadline_fails_and_later_words_may_take_their_time():
    from services.gateway.asking import _first_by, _FirstWordsLate

    async def words(first_after: float, then_after: float):
        await asyncio.sleep(first_after)
        yield ["first"]
        await asyncio.sleep(then_after)
        yield ["second"]

    async def collect(first_after: float, then_after: float, within: float):
        deadline = asyncio.get_running_loop().time() + within
        return [batch async for batch in _first_by(words(first_after, then_after), deadline)]

    assert asyncio.run(collect(0.0, 0.1, within=0.05)) == [["first"], ["second"]]
    with pytest.raises(_FirstWordsLate):
        asyncio.run(collect(1.0, 0.0, within=0.05))
