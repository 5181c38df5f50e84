"""Query latency in-process and through the Serve gateway, beside the targets; router and reranker scores.

    python bench/query.py [--index NAME] [--eval FILE] [--limit N] [--requests N] [--json]

Against an existing index of the Ray docs (default `bench-ray-300`, built by
`make bench-retrieval`), with the questions of the eval set:

1. in-process (no Serve, `open_local_pipeline`), concurrency 1: "retrieval" =
   `pipeline.prepare` (embed, retrieve, rerank, route; no generation), "query" =
   `pipeline.answer` with the extractive generator, interleaved question by question.
   The query-embedding cache is emptied before every measured request, so no figure
   comes from a cached vector; a repeated question answered from the cache is its own line.
2. through the gateway (Serve started in this process, HTTP with httpx), with the
   embedder's query cache off (`serving.query_cache_size: 0`) for the whole run, at
   concurrency 1 and 16: "retrieval" = `POST /stream` read until its `sources` event
   (everything before generation), "query" = `POST /query` (extractive).
3. the median of each stage of `timings_ms` in both runs, and the Serve overhead
   (gateway retrieval p50 / in-process retrieval p50).
4. the router (5-fold CV) and the reranker's tag classifier (stratified 80/20) trained
   in memory (no artifact is written), beside the reference's scores.
5. retrieval_score of the answers' sources (all questions and in-corpus ones).
6. where the time goes: client latency outside the pipeline, and CPU ms per request
   of each process of the Ray node at concurrency 16 (Linux).

Targets: gateway retrieval c1 p50 <= 35 ms and p95 <= 70 ms; in-process retrieval
p50 <= 15 ms; gateway /query c16 >= 50 req/s (extractive).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from common import EVAL_SET, RAY_DOCS_CONFIG, ROOT, SHARED, emit_json, free_port, index_pages, require_path

os.environ.setdefault("DOCENT_DATA_DIR", str(ROOT / ".docent"))

import numpy as np

from docent.settings import Settings, load_settings
from docent.types import EXTRACTIVE_LLM, QueryOptions, QueryRequest
from evaluation.retrieval import EvalQuestion, load_eval_set, retrieval_hit

ROUTING_DATA = SHARED / "datasets" / "routing-dataset-train.jsonl"
RERANKER_DATA = SHARED / "datasets" / "embedding_qa.json"
REFERENCE_ROUTER = {"precision_weighted": 0.919, "recall_weighted": 0.929, "f1_weighted": 0.923}
REFERENCE_RERANKER = {"precision": 0.917, "recall": 0.917, "f1": 0.915}
STAGES = ("embed", "retrieve", "rerank", "route", "generate", "total")
WARMUP_QUESTIONS = 8
CONCURRENCY = 16
OPTIONS = {"llm": EXTRACTIVE_LLM}


# --- figures -------------------------------------------------------------------------------


def latency_figures(latencies_ms: Sequence[float], wall_s: float) -> dict[str, float]:
    if not latencies_ms:
        return {"p50_ms": float("nan"), "p95_ms": float("nan"), "rps": 0.0}
    values = np.asarray(latencies_ms)
    return {
        "p50_ms": round(float(np.percentile(values, 50)), 1),
        "p95_ms": round(float(np.percentile(values, 95)), 1),
        "rps": round(len(values) / wall_s, 1),
    }


def stage_medians(timings: Sequence[dict[str, float]]) -> dict[str, float]:
    return {
        stage: round(statistics.median(t[stage] for t in timings), 2)
        for stage in STAGES
        if timings and all(stage in t for t in timings)
    }


def score(questions: Sequence[EvalQuestion], sources: Sequence[Sequence[str]], pages: set[str]) -> dict[str, float]:
    hits = [retrieval_hit(q.source, s) for q, s in zip(questions, sources, strict=True)]
    in_corpus = [hit for hit, q in zip(hits, questions) if q.page in pages]
    return {
        "all": round(sum(hits) / len(hits), 3) if hits else float("nan"),
        "in_corpus": round(sum(in_corpus) / len(in_corpus), 3) if in_corpus else float("nan"),
        "questions": len(hits),
        "in_corpus_questions": len(in_corpus),
    }


# --- in-process ----------------------------------------------------------------------------


def _query_embedder(pipeline):
    """The in-process retriever embeds with a QueryEmbedder's bound `embed_query`."""
    return pipeline.retriever.embed.__self__


def _request(question: str) -> QueryRequest:
    return QueryRequest(query=question, options=QueryOptions(**OPTIONS))


async def run_in_process(settings: Settings, questions: Sequence[EvalQuestion]) -> dict:
    from services.gateway.local import close_local_pipeline, open_local_pipeline

    pipeline = await open_local_pipeline(settings)
    embedder = _query_embedder(pipeline)
    texts = [q.question for q in questions]
    try:
        for text in texts[:WARMUP_QUESTIONS]:  # model, BM25 and PostgreSQL pages warm
            await pipeline.answer(_request(text))

        async def timed(call: Callable[[QueryRequest], Awaitable], text: str, cold: bool = True):
            """One request's latency, its result and whether its vector came from the cache."""
            if cold:
                embedder.cache.clear()
            request = _request(text)
            hits = embedder.hits
            started = time.perf_counter()
            result = await call(request)
            return (time.perf_counter() - started) * 1000, result, embedder.hits - hits

        # The three kinds interleave question by question (retrieval and query in turn
        # first), so a burst of load elsewhere on the machine hits them alike.
        latencies: dict[str, list[float]] = {"retrieval": [], "query": [], "cached": []}
        cache_hits = dict.fromkeys(latencies, 0)
        prepared, answers = [], []
        for number, text in enumerate(texts):
            for kind in ("retrieval", "query") if number % 2 == 0 else ("query", "retrieval"):
                ms, result, hits = await timed(pipeline.prepare if kind == "retrieval" else pipeline.answer, text)
                latencies[kind].append(ms)
                cache_hits[kind] += hits
                (prepared if kind == "retrieval" else answers).append(result)
            # asked again: its vector is in the cache from the request just before
            ms, _, hits = await timed(pipeline.prepare, text, cold=False)
            latencies["cached"].append(ms)
            cache_hits["cached"] += hits
        # concurrency 1: requests per second of time spent in requests
        figures = {kind: latency_figures(values, sum(values) / 1000) for kind, values in latencies.items()}
        return {
            **figures,
            "cache_hits": {**cache_hits, "cached_of": len(texts)},
            "stages": stage_medians([a.timings_ms for a in answers]),
            "retrieval_stages": stage_medians([p.timings_ms for p in prepared]),
            "sources": [[s.source for s in a.sources] for a in answers],
            "prepared_sources": [[s.source for s in p.sources()] for p in prepared],
            "tag_reranker": await pipeline.reranker.enabled(),  # a tag classifier (no cross-encoder is configured)
        }
    finally:
        await close_local_pipeline(pipeline)


# --- through the gateway -------------------------------------------------------------------


def start_gateway(index: str, config: str) -> int:
    from ray import serve

    from docent.ray_runtime import ensure_ray
    from docent.serve_config import apply_serve_environment
    from services.gateway.deployment import build_app

    settings = load_settings(config)
    apply_serve_environment(settings)  # as `docent serve` does
    ensure_ray(settings)
    port = free_port()
    serve.start(http_options={"port": port})
    # The pipeline is measured, not the gateway's policies: no keys, no limits, no answer cache.
    policies_off = {"auth_enabled": False, "gateway": {"cache": {"enabled": False}, "rate_limit": {"enabled": False}}}
    app = build_app({"settings": config, "index": index, "serving": {"query_cache_size": 0}, **policies_off})
    serve.run(app, name="docent", route_prefix="/")
    return port


def stop_gateway() -> None:
    import ray
    from ray import serve

    try:
        serve.shutdown()
    except RuntimeError:  # a handle made inside a finished event loop cannot shut down cleanly; Ray goes anyway
        pass
    finally:
        ray.shutdown()


def _cpu_seconds_by_process() -> dict[int, tuple[str, float]]:
    """pid → (name, CPU seconds so far) of this process and of every process under it
    (the Ray node it started: raylet, GCS, proxy, replicas); Linux only, else empty."""
    tick = os.sysconf("SC_CLK_TCK")
    parents, found = {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        name = argv[0].split(" ")[0]
        if name.startswith("ray::"):  # the title names the actor, then `.method` while one runs
            name = name.removeprefix("ray::").removeprefix("ServeReplica:docent:").split(".")[0]
        elif Path(name).name.startswith("python") and len(argv) > 1:
            name = Path(next((a for a in argv[1:] if not a.startswith("-")), argv[1])).name
        else:
            name = Path(name).name
        found[pid] = (name, (int(fields[11]) + int(fields[12])) / tick)
    me, mine = os.getpid(), {}
    for pid, (name, seconds) in found.items():
        ancestor = pid
        while ancestor not in (me, 0, 1) and ancestor in parents:
            ancestor = parents[ancestor]
        if ancestor == me:
            mine[pid] = ("client (this process)" if pid == me else name, seconds)
    return mine


def _cpu_ms_per_request(before: dict, after: dict, requests: int) -> dict[str, float]:
    totals: dict[str, float] = {}
    for pid, (name, seconds) in after.items():
        spent = seconds - before[pid][1] if pid in before else seconds
        totals[name] = totals.get(name, 0.0) + spent
    return {name: round(1000 * spent / max(requests, 1), 1) for name, spent in totals.items()}


class Failed(Exception):
    pass


async def _query(client, text: str) -> dict:
    response = await client.post("/query", json={"query": text, "options": OPTIONS})
    if response.status_code != 200:
        raise Failed(f"/query {response.status_code}: {response.text[:200]}")
    return response.json()


async def _until_sources(client, text: str) -> dict:
    """`/stream` read up to its `sources` event; leaving then closes the connection (and the generation)."""
    async with client.stream("POST", "/stream", json={"query": text, "options": OPTIONS}) as response:
        if response.status_code != 200:
            raise Failed(f"/stream {response.status_code}: {(await response.aread())[:200]!r}")
        event = None
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event == "sources":
                return json.loads(line[5:])
            elif line.startswith("data:") and event == "error":
                raise Failed(f"/stream error event: {line[5:200]}")
    raise Failed("/stream ended without a sources event")


async def _closed_loop(client, call, texts: Sequence[str], concurrency: int):
    """`concurrency` clients, each sending its next request when its last one is answered."""
    pending = iter(texts)
    latencies: list[float] = []
    results: list = []
    errors: list[str] = []

    async def client_loop():
        for text in pending:
            t = time.perf_counter()
            try:
                results.append(await call(client, text))
            except (Failed, OSError) as exc:
                errors.append(str(exc))
                continue
            except Exception as exc:  # noqa: BLE001 - httpx timeouts and protocol errors count as failures
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            latencies.append((time.perf_counter() - t) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(client_loop() for _ in range(concurrency)))
    return latencies, time.perf_counter() - started, results, errors


async def _embedder_stats(handle) -> str:
    """The embedder replica's cache counters and recent batch sizes, as one line."""
    try:
        stats = await handle.stats.remote()
    except Exception as exc:  # noqa: BLE001 - only a check printed beside the figures
        return f"unavailable ({type(exc).__name__})"
    batches = stats.get("batch_sizes") or []
    line = f"{stats.get('cache_hits')} hits, {stats.get('cache_misses')} misses"
    if batches:
        line += (f"; batch sizes of its last {len(batches)} passes: "
                 f"median {statistics.median(batches):g}, max {max(batches)}")
    return line


async def run_gateway(port: int, questions: Sequence[EvalQuestion], requests: int) -> dict:
    import httpx
    from ray import serve

    texts = [q.question for q in questions]
    cycled = list(itertools.islice(itertools.cycle(texts), requests))
    limits = httpx.Limits(max_connections=2 * CONCURRENCY, max_keepalive_connections=2 * CONCURRENCY)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120, limits=limits) as client:
        deadline = time.monotonic() + 180
        while True:
            try:
                ready = await client.get("/readyz")
                if ready.status_code == 200:
                    break
                problem = ready.text
            except httpx.HTTPError as exc:
                problem = str(exc)
            if time.monotonic() > deadline:
                raise SystemExit(f"the gateway was not ready after 180 s: {problem}")
            await asyncio.sleep(0.5)
        for text in texts[:WARMUP_QUESTIONS]:
            await _query(client, text)
            await _until_sources(client, text)

        figures: dict = {"retrieval": {}, "query": {}}
        errors: dict[str, list[str]] = {}
        answers: list[dict] = []
        cpu_ms: dict[str, dict[str, float]] = {}  # at concurrency 16, per request, by process
        outside: list[float] = []  # client latency minus the pipeline's own total: HTTP, proxy, JSON
        for kind, call in (("retrieval", _until_sources), ("query", _query)):
            for label, concurrency, items in (("c1", 1, texts), (f"c{CONCURRENCY}", CONCURRENCY, cycled)):
                cpu_before = _cpu_seconds_by_process()
                latencies, wall, results, failed = await _closed_loop(client, call, items, concurrency)
                if concurrency > 1:
                    cpu_after = _cpu_seconds_by_process()
                    cpu_ms[kind] = _cpu_ms_per_request(cpu_before, cpu_after, len(latencies))
                figures[kind][label] = latency_figures(latencies, wall)
                errors[f"{kind} {label}"] = failed
                if kind == "query" and label == "c1":
                    answers = results
                    outside = [ms - a["timings_ms"]["total"] for ms, a in zip(latencies, results)]
    cache = await _embedder_stats(serve.get_deployment_handle("embedder", "docent"))
    complete = len(answers) == len(texts)
    return {
        **figures,
        "errors": errors,
        "stages": stage_medians([a["timings_ms"] for a in answers]),
        "sources": [[s["source"] for s in a["sources"]] for a in answers] if complete else None,
        "embedder_cache": cache,
        "cpu_ms": cpu_ms,
        "outside_pipeline_ms": round(statistics.median(outside), 1) if outside else float("nan"),
        "pieces": statistics.median(a["usage"]["completion_tokens"] for a in answers) if answers else 0,
    }


# --- router and reranker -------------------------------------------------------------------


def train_models(base_url: str) -> tuple[dict, dict, bool]:
    from training.reranker import load_qa_pairs, train_reranker
    from training.router import load_routing_rows, train_router

    _, router = train_router(load_routing_rows(require_path(ROUTING_DATA, "routing dataset")))
    reranker = train_reranker(load_qa_pairs(require_path(RERANKER_DATA, "reranker training data")), base_url)
    return router, reranker.metrics, reranker.sanity_passed


# --- output --------------------------------------------------------------------------------


def _mark(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _row(label: str, f: dict, target: str = "") -> str:
    return f"  {label:<44} {f['p50_ms']:>8.1f} {f['p95_ms']:>8.1f} {f['rps']:>8.1f}  {target}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", default="bench-ray-300", help="an existing index (default: bench-ray-300)")
    parser.add_argument("--eval", type=Path, default=EVAL_SET)
    parser.add_argument("--limit", type=int, help="the first N questions only")
    parser.add_argument("--requests", type=int, default=320, help=f"requests per run at concurrency {CONCURRENCY}")
    parser.add_argument("--config", default=str(RAY_DOCS_CONFIG))
    parser.add_argument("--json", action="store_true", help="print one JSON object of the figures last")
    args = parser.parse_args()

    questions = load_eval_set(require_path(args.eval, "eval set"))[: args.limit]
    settings = load_settings(args.config, index=args.index)
    pages = asyncio.run(index_pages(settings))
    if pages is None:
        sys.exit(
            f"no index named {args.index!r} in {settings.data_dir}: run `make bench-retrieval` "
            "(it builds bench-ray-300 and bench-ray-700 from ../shared/corpora/ray-docs-2.7)"
        )
    print(f"{len(questions)} questions from {args.eval}; index {args.index} ({settings.data_dir})", flush=True)

    print("in-process run …", flush=True)
    local = asyncio.run(run_in_process(settings, questions))
    print("gateway run (Ray Serve in this process) …", flush=True)
    try:
        port = start_gateway(args.index, args.config)
        gateway = asyncio.run(run_gateway(port, questions, args.requests))
    finally:
        stop_gateway()
    print("training router and reranker in memory …", flush=True)
    router, reranker, sanity = train_models(settings.rerank.base_url)

    figures = report(local, gateway, router, reranker, sanity, questions, pages, args.requests)
    if args.json:
        emit_json(figures)


def report(ip: dict, g: dict, router: dict, reranker: dict, sanity: bool, questions, pages, requests: int) -> dict:
    """Prints the figures beside their targets and references; returns the --json object."""
    c16 = f"c{CONCURRENCY}"
    targets = {
        "in-process": ip["retrieval"]["p50_ms"] <= 15,
        "gateway p50": g["retrieval"]["c1"]["p50_ms"] <= 35,
        "gateway p95": g["retrieval"]["c1"]["p95_ms"] <= 70,
        "gateway rps": g["query"][c16]["rps"] >= 50,
    }
    overhead = round(g["retrieval"]["c1"]["p50_ms"] / ip["retrieval"]["p50_ms"], 2)
    errors = {k: v for k, v in g["errors"].items() if v}

    print()
    print(f"{'latency':<46} {'p50 ms':>8} {'p95 ms':>8} {'req/s':>8}  target")
    print("in-process (no Serve), concurrency 1, query cache emptied before each request")
    print(_row("retrieval (prepare: embed+retrieve+rerank+route)", ip["retrieval"],
               f"p50 <= 15 ms {_mark(targets['in-process'])}"))
    print(_row("query (answer, extractive)", ip["query"]))
    print(_row("repeated question, cached vector (retrieval)", ip["cached"]))
    print("gateway (Serve over HTTP), embedder query cache off (serving.query_cache_size: 0)")
    print(_row("retrieval c1 (/stream to its sources event)", g["retrieval"]["c1"],
               f"p50 <= 35 ms {_mark(targets['gateway p50'])}, p95 <= 70 ms {_mark(targets['gateway p95'])}"))
    print(_row(f"retrieval {c16}", g["retrieval"][c16]))
    print(_row("query c1 (/query, extractive)", g["query"]["c1"]))
    print(_row(f"query {c16}", g["query"][c16], f">= 50 req/s {_mark(targets['gateway rps'])}"))
    print(f"Serve overhead: gateway retrieval p50 / in-process retrieval p50 = {overhead:.2f}x")
    failures = "; ".join(f"{k}: {len(v)} ({v[0]})" for k, v in errors.items())
    print(f"requests: {len(questions)} at c1, {requests} at {c16}; {'ERRORS: ' + failures if errors else 'no errors'}")
    hits = ip["cache_hits"]
    print(f"query-embedding cache hits: in-process retrieval {hits['retrieval']}, query {hits['query']}, "
          f"cached line {hits['cached']}/{hits['cached_of']}; gateway embedder: {g['embedder_cache']}")
    reranker_state = "on" if ip["tag_reranker"] else "off (no trained artifact in the data dir)"
    print(f"tag reranker in the pipeline: {reranker_state}")

    print()
    print(f"{'median stage ms':<22}" + "".join(f"{s:>10}" for s in STAGES))
    for label, stages in (("gateway /query c1", g["stages"]), ("in-process query", ip["stages"]),
                          ("in-process retrieval", ip["retrieval_stages"])):
        print(f"{label:<22}" + "".join(f"{stages[s]:>10.2f}" if s in stages else f"{'-':>10}" for s in STAGES))
    print(f"gateway /query c1: client latency - pipeline total (HTTP, proxy, ingress, JSON) median "
          f"{g['outside_pipeline_ms']:.1f} ms; the extractive answer streams a median {g['pieces']:.0f} word-sized "
          "pieces from the generator deployment to the gateway")
    cores = os.cpu_count() or 1
    for kind, path in (("retrieval", "/stream to sources"), ("query", "/query")):
        per_process = g["cpu_ms"].get(kind)
        if per_process:
            total = sum(per_process.values())
            shown = sorted(((k, v) for k, v in per_process.items() if v >= 0.5), key=lambda kv: -kv[1])
            print(f"CPU ms per {path} at {c16}: total {total:.0f}, so at most ~{1000 * cores / total:.0f} req/s "
                  f"on {cores} cores: " + ", ".join(f"{k} {v:.1f}" for k, v in shown))
    if g["cpu_ms"]:
        print("  (CPU time of this process and of the Ray node it started; PostgreSQL's not counted)")

    retrieval_score = score(questions, ip["sources"], pages)
    line = (f"retrieval_score of the answers' sources (in-process): all {retrieval_score['all']:.3f} "
            f"({retrieval_score['questions']} q), in-corpus {retrieval_score['in_corpus']:.3f} "
            f"({retrieval_score['in_corpus_questions']} q)")
    if g["sources"] is not None:
        gateway_score = score(questions, g["sources"], pages)
        retrieval_score.update(gateway_all=gateway_score["all"], gateway_in_corpus=gateway_score["in_corpus"])
        line += f"; gateway: all {gateway_score['all']:.3f}, in-corpus {gateway_score['in_corpus']:.3f}"
    prepared_score = score(questions, ip["prepared_sources"], pages)
    if prepared_score["all"] != retrieval_score["all"]:
        line += f"; in-process retrieval pass: all {prepared_score['all']:.3f}"
    print()
    print(line)

    print()
    print(f"{'model (weighted averages, as the reference)':<48} {'precision':>9} {'recall':>7} {'f1':>7}   reference p / r / f1")
    weighted_router = {k: router[f"{k}_weighted"] for k in ("precision", "recall", "f1")}
    reference_router = {k: REFERENCE_ROUTER[f"{k}_weighted"] for k in ("precision", "recall", "f1")}
    for label, ours, reference in (
        ("router (5-fold CV)", weighted_router, reference_router),
        (f"reranker tags (80/20, {reranker['test_rows']} test rows)", reranker, REFERENCE_RERANKER),
    ):
        print(f"{label:<48} {ours['precision']:>9.3f} {ours['recall']:>7.3f} {ours['f1']:>7.3f}   "
              + " / ".join(f"{reference[k]:.3f}" for k in ("precision", "recall", "f1")))
    print(f"router, open-source label only (binary): p {router['precision']:.3f} r {router['recall']:.3f} "
          f"f1 {router['f1']:.3f}; routed to the open-source LLM {router['routed_to_oss']:.1%}")
    print("(trained in memory: no artifact written)"
          + ("" if sanity else "; the reranker failed a minimum-functionality check"))

    def metrics(ours: dict, reference: dict) -> dict:
        return {k: round(v, 3) for k, v in ours.items() if isinstance(v, float)} | {"reference": reference}

    return {
        "gateway": {"retrieval": g["retrieval"], "query": g["query"]},
        "in_process": {"retrieval": {"c1": ip["retrieval"]}, "query": {"c1": ip["query"]}},
        "stages_ms": {"gateway": g["stages"], "in_process": ip["stages"]},
        "router": metrics(router, REFERENCE_ROUTER),
        "reranker": metrics(reranker, REFERENCE_RERANKER),
        "retrieval_score": retrieval_score,
        "serve_overhead_ratio": overhead,
    }


if __name__ == "__main__":
    main()
