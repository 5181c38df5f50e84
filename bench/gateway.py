"""What the gateway's policies cost and save: keys, rate limits, the answer log and the response cache.

    python bench/gateway.py [--index NAME] [--eval FILE] [--limit N] [--json]

Against an existing index of the Ray docs (default `bench-ray-300`, built by
`make bench-retrieval`), the eval set's questions are asked through the Serve gateway
(`POST /query`, extractive answers, concurrency 1) three times:

1. policies off: no key, no limits, no cache (the answer is still logged);
2. policies on, in-process limits and cache: a key checked in PostgreSQL, a limit, a
   cache lookup that misses (every question is new), then the same questions again
   (every lookup hits);
3. the same with Redis (`redis-server` started here, when it is installed).

Printed: p50/p95 of each, the policies' overhead (on, miss / off) and the cache's
speed-up (miss / hit), each ratio measured within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from common import EVAL_SET, RAY_DOCS_CONFIG, emit_json, free_port, index_pages, require_path

os.environ.setdefault("DOCENT_DATA_DIR", str(Path(__file__).resolve().parent.parent / ".docent"))

import httpx
import numpy as np

from docent.settings import load_settings
from evaluation.retrieval import load_eval_set

OPTIONS = {"llm": "extractive"}
WARMUP_QUESTIONS = 4
GENEROUS_LIMIT = {"requests": 1_000_000, "window_s": 60}  # the limiter runs, but never refuses


def _percentiles(latencies_ms: list[float]) -> dict[str, float]:
    return {"p50_ms": float(np.percentile(latencies_ms, 50)), "p95_ms": float(np.percentile(latencies_ms, 95))}


def _deploy(port: int, config: str, index: str, overrides: dict) -> None:
    from ray import serve

    from services.gateway.deployment import build_app

    serve.run(build_app({"settings": config, "index": index, **overrides}), name="docent", route_prefix="/")
    deadline = time.monotonic() + 300
    while httpx.get(f"http://127.0.0.1:{port}/readyz").status_code != 200:
        if time.monotonic() > deadline:
            sys.exit("the gateway did not become ready in 5 minutes")
        time.sleep(0.5)


async def _ask_all(port: int, questions: list[str], key: str | None) -> tuple[list[float], int]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    latencies, hits = [], 0
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60) as client:
        for question in questions:
            started = time.perf_counter()
            response = await client.post("/query", json={"query": question, "options": OPTIONS})
            latencies.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
            hits += response.headers.get("x-cache") == "hit"
    return latencies, hits


async def _new_key(settings) -> str:
    from docent.db import connect
    from services.gateway.keys import create_key

    conn = await connect(settings)
    try:
        return await create_key(conn, f"bench-{uuid.uuid4().hex[:8]}")
    finally:
        await conn.close()


def _run(port: int, questions: list[str], key: str | None, label: str) -> dict[str, float]:
    asyncio.run(_ask_all(port, [f"warm-up {n}: {q}" for n, q in enumerate(questions[:WARMUP_QUESTIONS])], key))
    latencies, hits = asyncio.run(_ask_all(port, questions, key))
    figures = {**_percentiles(latencies), "cache_hits": hits}
    print(f"  {label:<34} p50 {figures['p50_ms']:6.1f} ms   p95 {figures['p95_ms']:6.1f} ms   cache hits {hits}/{len(questions)}")
    return figures


def _policies_on(redis_url: str | None) -> dict:
    return {"auth_enabled": True, "redis_url": redis_url, "gateway": {"rate_limit": GENEROUS_LIMIT, "cache": {"enabled": True}}}


def _start_redis() -> subprocess.Popen | None:
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    port = free_port()
    process = subprocess.Popen([binary, "--port", str(port), "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            process.url = f"redis://127.0.0.1:{port}/0"  # type: ignore[attr-defined]
            return process
        except OSError:
            time.sleep(0.05)
    process.terminate()
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", default="bench-ray-300", help="an existing index (default: bench-ray-300)")
    parser.add_argument("--eval", type=Path, default=EVAL_SET)
    parser.add_argument("--limit", type=int, default=60, help="questions per run (default 60)")
    parser.add_argument("--config", default=str(RAY_DOCS_CONFIG))
    parser.add_argument("--json", action="store_true", help="print one JSON object of the figures last")
    args = parser.parse_args()

    questions = [q.question for q in load_eval_set(require_path(args.eval, "eval set"))[: args.limit]]
    settings = load_settings(args.config, index=args.index)
    if asyncio.run(index_pages(settings)) is None:
        sys.exit(f"no index named {args.index!r} in {settings.data_dir}: run `make bench-retrieval`")

    from ray import serve

    from docent.ray_runtime import ensure_ray
    from docent.serve_config import apply_serve_environment

    apply_serve_environment(settings)
    ensure_ray(settings)
    port = free_port()
    serve.start(http_options={"port": port})
    redis = _start_redis()
    figures: dict[str, dict] = {}
    try:
        print(f"{len(questions)} questions, index {args.index}, POST /query (extractive), concurrency 1")
        _deploy(port, args.config, args.index, {"auth_enabled": False, "gateway": {"cache": {"enabled": False}, "rate_limit": {"enabled": False}}})
        figures["off"] = _run(port, questions, None, "policies off")
        backends = [("in-process", None)] + ([("redis", redis.url)] if redis else [])
        for name, url in backends:
            _deploy(port, args.config, args.index, _policies_on(url))
            key = asyncio.run(_new_key(settings))
            salted = [f"{q} ({name})" for q in questions]  # each backend starts with an empty cache
            figures[f"{name}_miss"] = _run(port, salted, key, f"policies on ({name}), cache miss")
            figures[f"{name}_hit"] = _run(port, salted, key, f"policies on ({name}), cache hit")
    finally:
        serve.shutdown()
        if redis:
            redis.terminate()
    off = figures["off"]["p50_ms"]
    for name, _ in backends:
        miss, hit = figures[f"{name}_miss"]["p50_ms"], figures[f"{name}_hit"]["p50_ms"]
        figures[f"{name}_overhead_ratio"] = miss / off
        figures[f"{name}_cache_speedup"] = miss / hit
        print(f"  {name}: policies cost x{miss / off:.2f} of the p50 on a miss; a cache hit is x{miss / hit:.1f} faster")
    if not redis:
        print("  (redis-server not installed: the Redis run was skipped)")
    if args.json:
        emit_json(figures)


if __name__ == "__main__":
    main()
