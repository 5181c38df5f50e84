"""Prometheus metrics of the gateway: requests, latency per endpoint and per stage, tokens, routes, cache, limits."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from docent.observability import LATENCY_BUCKETS


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter("docent_requests", "Requests by endpoint and HTTP status", ["endpoint", "status"], registry=r)
        self.latency = Histogram(
            "docent_request_seconds", "Request latency by endpoint", ["endpoint"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.stage_latency = Histogram(
            "docent_stage_seconds", "Latency of each pipeline stage", ["stage"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.tokens = Counter("docent_llm_tokens", "Tokens by LLM and kind (prompt, completion)", ["llm", "kind"], registry=r)
        self.cost = Counter("docent_llm_cost_dollars", "Estimated LLM cost", ["llm"], registry=r)
        self.routes = Counter("docent_route_decisions", "LLM chosen by the router or the request", ["llm"], registry=r)
        self.answers = Counter("docent_answers", "Answers by the LLM that actually answered", ["llm"], registry=r)
        self.fallbacks = Counter("docent_llm_fallbacks", "LLM failures that moved to the next in the chain", ["llm"], registry=r)
        self.cache = Counter("docent_cache_lookups", "Response cache lookups by result (hit, miss, error)", ["result"], registry=r)
        self.rate_limited = Counter("docent_rate_limited", "Requests refused by a rate limit", registry=r)
        self.redis_errors = Counter("docent_redis_errors", "Redis calls that failed or timed out", registry=r)
        self.feedback = Counter("docent_feedback", "Feedback received, by rating", ["rating"], registry=r)
        for result in ("hit", "miss", "error"):
            self.cache.labels(result)  # exported at 0 from the start: a ratio has a denominator before the first hit
        for rating in ("up", "down"):
            self.feedback.labels(rating)
        self.errors = Counter("docent_errors", "Failed requests by endpoint and kind", ["endpoint", "kind"], registry=r)

    def record_condensed(self, llm: str | None, usage, cost: float, ms: float) -> None:
        """A follow-up made to stand alone: by an LLM (its tokens and cost) or offline (`llm` None)."""
        self.stage_latency.labels("condense").observe(ms / 1000)
        if llm is None:
            return
        self.tokens.labels(llm, "prompt").inc(usage.prompt_tokens)
        self.tokens.labels(llm, "completion").inc(usage.completion_tokens)
        self.cost.labels(llm).inc(cost)

    def record_answer(self, llm: str, route: str, usage, cost: float, timings_ms: dict[str, float], fallbacks) -> None:
        self.routes.labels(route).inc()
        self.answers.labels(llm).inc()
        self.tokens.labels(llm, "prompt").inc(usage.prompt_tokens)
        self.tokens.labels(llm, "completion").inc(usage.completion_tokens)
        self.cost.labels(llm).inc(cost)
        for fallback in fallbacks:
            self.fallbacks.labels(fallback.llm).inc()
        for stage, ms in timings_ms.items():
            if stage != "total":
                self.stage_latency.labels(stage).observe(ms / 1000)
