"""The `docent` command line."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from docent.cli_support import (
    RUNTIME_ERROR,
    USAGE_ERROR,
    CliState,
    CountProgress,
    console,
    errors,
    eval_errors,
)
from docent.cli_support import clear_errors as _clear_errors
from docent.cli_support import cli_settings as _settings
from docent.cli_support import fail as _fail

app = typer.Typer(
    help="docent: question answering over documentation. Ingest docs, inspect indexes, search, serve and ask; evaluate, experiment and fine-tune.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def main(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="YAML settings file (also: DOCENT_CONFIG)", envvar="DOCENT_CONFIG")
    ] = None,
) -> None:
    CliState.config = config


class _RichProgress:
    """One bar per ingest stage; a stage is complete when the next one starts."""

    _labels = {"download": "Syncing from object storage", "scan": "Scanning files", "index": "Parsing, embedding, writing", "bm25": "Building BM25 index"}

    def __init__(self, progress: Progress):
        self.progress, self.tasks = progress, {}

    def stage(self, name: str, total: int | None) -> None:
        self.finish()
        self.tasks[name] = self.progress.add_task(self._labels.get(name, name), total=total)

    def advance(self, name: str, amount: int = 1) -> None:
        self.progress.advance(self.tasks[name], amount)

    def finish(self) -> None:
        for task in self.progress.tasks:
            total = task.total or task.completed or 1
            self.progress.update(task.id, total=total, completed=total)


@app.command()
def ingest(
    path: Annotated[str, typer.Argument(help="docs folder, one file, or s3://bucket/prefix to index")],
    base_url: Annotated[
        str | None, typer.Option(help="public URL of PATH: files map to URL + path with .html + #anchor")
    ] = None,
    index: Annotated[str | None, typer.Option(help="index name (default: from model and chunking)")] = None,
    chunk_size: Annotated[int | None, typer.Option(help="maximum chunk length")] = None,
    chunk_overlap: Annotated[int | None, typer.Option(help="overlap between neighbouring chunks")] = None,
    chunk_unit: Annotated[str | None, typer.Option(help="chars | tokens (of the embedding model)")] = None,
    embedding_model: Annotated[str | None, typer.Option(help="sentence-transformers name or path")] = None,
    exclude: Annotated[
        list[str] | None, typer.Option(help="glob of paths to leave out, relative to PATH (repeatable; replaces the configured list)")
    ] = None,
    prune: Annotated[bool, typer.Option(help="remove documents whose files are gone")] = False,
) -> None:
    """Index a docs tree: only new and changed files are processed.

    An s3://bucket/prefix source is mirrored under the data dir first (changed objects only; endpoint: ingest.s3_endpoint_url or AWS_ENDPOINT_URL).
    """
    from ingest.pipeline import IngestReport, run_ingest

    with _clear_errors():
        settings = _settings(
            index=index,
            chunking={"chunk_size": chunk_size, "chunk_overlap": chunk_overlap, "unit": chunk_unit},
            embedding={"model": embedding_model},
            ingest={"exclude": exclude},
        )
        columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
        with Progress(*columns, console=errors, transient=False) as bar:
            progress = _RichProgress(bar)
            report: IngestReport = run_ingest(path, settings, base_url=base_url, prune=prune, progress=progress)
            progress.finish()
    _print_ingest_summary(report)


def _print_ingest_summary(report) -> None:
    table = Table(title=f"ingest → index {report.index}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("files read", str(report.files_read))
    unchanged = f"{report.files_unchanged}" + (f" ({report.unchanged_skipped} still unreadable)" if report.unchanged_skipped else "")
    table.add_row("files unchanged", unchanged)
    table.add_row("files skipped", str(len(report.skipped)))
    for reason, count in report.skip_reasons.most_common():
        table.add_row(f"  {reason}", str(count))
    if report.excluded or report.unsupported:
        table.add_row("files excluded / unsupported type", f"{report.excluded} / {report.unsupported}")
    if report.files_removed or report.files_missing:
        table.add_row("files removed (pruned) / gone but kept", f"{report.files_removed} / {report.files_missing}")
    table.add_row("sections", str(report.sections))
    table.add_row("chunks added / unchanged / removed", f"{report.chunks_added} / {report.chunks_unchanged} / {report.chunks_removed}")
    if report.chunks_over_limit:
        table.add_row("chunks over the model's token limit", str(report.chunks_over_limit))
    rebuilt = [name for name, done in (("HNSW", report.vector_index_built), ("BM25", report.lexical_rebuilt)) if done]
    if rebuilt:
        table.add_row("search indexes built", " + ".join(rebuilt))
    table.add_row("seconds", f"{report.seconds:.1f}")
    table.add_row("chunks per second", f"{report.chunks_per_second:.1f}")
    console.print(table)
    if report.files_missing:
        console.print(f"{report.files_missing} indexed file(s) no longer exist under the path: add --prune to remove them")
    shown = 20
    for uri, reason in sorted(report.skipped.items())[:shown]:
        console.print(f"[yellow]skipped[/] {uri}: {reason}", highlight=False)
    if len(report.skipped) > shown:
        console.print(f"… and {len(report.skipped) - shown} more skipped files")


@app.command()
def indexes(as_json: Annotated[bool, typer.Option("--json", help="one JSON object for scripts")] = False) -> None:
    """List every index with its configuration, document and chunk counts, and size."""
    from docent.db import connect
    from docent.store import IndexStore

    async def fetch():
        conn = await connect(settings)
        try:
            return await IndexStore(conn).list()
        finally:
            await conn.close()

    with _clear_errors():
        settings = _settings()
        found = asyncio.run(fetch())
    if as_json:
        print(json.dumps({"indexes": [i.model_dump() for i in found]}))
        return
    if not found:
        console.print("no indexes yet: run `docent ingest PATH`")
        return
    table = Table(
        Column("name", no_wrap=True), Column("model", overflow="fold"), "dim", "chunking", "docs", "chunks", "MiB",
        caption="details: docent indexes --json",
    )
    for i in found:
        unit = "t" if i.chunk_unit == "tokens" else ""
        table.add_row(
            i.name, Path(i.embedding_model).name, str(i.embedding_dim),
            f"{i.chunk_size}{unit}/{i.chunk_overlap}" + ("" if i.include_titles else " no titles"),
            str(i.documents), str(i.chunks), f"{i.size_bytes / 2**20:.1f}",
        )
    console.print(table)


@app.command("drop-index")
def drop_index(
    name: Annotated[str, typer.Argument(help="index to remove with all its chunks")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
) -> None:
    """Remove an index and everything in it."""
    from docent.db import connect
    from docent.store import IndexStore

    if not yes and not typer.confirm(f"Remove index {name!r} and all its chunks?"):
        raise typer.Exit(1)

    async def drop():
        conn = await connect(settings)
        try:
            await IndexStore(conn).drop(name)
        finally:
            await conn.close()

    with _clear_errors():
        settings = _settings()
        asyncio.run(drop())
    console.print(f"removed index {name}")


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="the question")],
    index: Annotated[str | None, typer.Option(help="index name (default: from settings)")] = None,
    k: Annotated[int | None, typer.Option("-k", help="chunks to return")] = None,
    lexical_k: Annotated[int | None, typer.Option(help="BM25 hits to join (hybrid)")] = None,
    mode: Annotated[str | None, typer.Option(help="semantic | lexical | hybrid")] = None,
    strategy: Annotated[
        str | None, typer.Option(help="chunks | sentence-window | parent-section (text around each hit)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object for scripts")] = False,
) -> None:
    """Retrieve the chunks that best match a question."""
    from services.retriever.search import search_index

    if not query.strip():
        raise _fail("the query is empty", USAGE_ERROR)
    if mode is not None and mode not in ("semantic", "lexical", "hybrid"):
        raise _fail(f"--mode must be semantic, lexical or hybrid, not {mode!r}", USAGE_ERROR)
    with _clear_errors():
        settings = _settings(
            index=index, retrieval={"mode": mode, "num_chunks": k, "lexical_k": lexical_k, "strategy": strategy}
        )
        hits = asyncio.run(search_index(query, settings))
    if as_json:
        print(json.dumps({"query": query, "index": settings.index_name, "results": [h.model_dump(include={"rank", "score", "source", "text", "chunk_id"}) for h in hits]}))
        return
    table = Table("#", "score", "source / text", show_lines=True)
    for hit in hits:
        preview = " ".join(hit.text.split())[:240]
        table.add_row(str(hit.rank), f"{hit.score:.3f}", f"[cyan]{hit.source}[/]\n{preview}")
    console.print(table)


@app.command()
def serve(
    serve_config: Annotated[
        Path, typer.Option("--config", help="Ray Serve config file (deployments, replicas, CPUs/GPUs)")
    ] = Path("config/serve.yaml"),
    host: Annotated[str | None, typer.Option(help="listen address (default: the Serve config's)")] = None,
    port: Annotated[int | None, typer.Option(help="listen port (default: the Serve config's)")] = None,
    index: Annotated[str | None, typer.Option(help="index answered from by default")] = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait for every deployment to run")] = 300.0,
) -> None:
    """Run the query service (gateway, embedder, retriever, reranker, router, generator) until Ctrl-C.

    Local Ray and the embedded database unless RAY_ADDRESS / DATABASE_URL say otherwise; the docent settings (`docent --config FILE serve`) go to every deployment.

    Clients need an API key (`docent keys create NAME`) unless DOCENT_AUTH_ENABLED=false; the web widget is served at `/`.
    """
    import signal

    from docent.db import database_url
    from ingest.ray_runtime import ensure_ray
    from services.gateway.serve_config import ServeConfigError, apply_serve_environment, deploy, load_serve_config

    with _clear_errors():
        settings = _settings(index=index)
        app_args: dict[str, Any] = {"index": index} if index else {}
        if CliState.config:
            app_args["settings"] = str(CliState.config.resolve())
        if not settings.database_url:  # start the embedded server once, here, for every replica
            app_args["database_url"] = database_url(settings)
        try:
            config = load_serve_config(serve_config, host, port, app_args)
        except ServeConfigError as exc:
            raise _fail(str(exc), USAGE_ERROR) from None
        apply_serve_environment(settings)
        ensure_ray(settings)
        from ray import serve as ray_serve

        with console.status("starting the deployments (models load, the index warms up)…"):
            try:
                deploy(config, timeout)
            except ServeConfigError as exc:
                ray_serve.shutdown()
                raise _fail(str(exc), RUNTIME_ERROR) from None
    url = f"http://{config.http_options.host}:{config.http_options.port}"
    llms = ", ".join(llm.name for llm in settings.generation.llms) or "none: extractive answers"
    console.print(f"[bold green]docent is serving[/] index [cyan]{settings.index_name}[/] at [link]{url}[/]")
    console.print(f"  POST {url}/query · {url}/stream (SSE) · {url}/docs · {url}/readyz · {url}/metrics")
    console.print(f"  LLMs: {llms}.  Ctrl-C stops.")
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        console.print("stopping…")
    finally:
        ray_serve.shutdown()
        import ray

        ray.shutdown()


@app.command()
def query(
    question: Annotated[str, typer.Argument(help="the question")],
    url: Annotated[str | None, typer.Option(help="gateway URL (default: serving.url)")] = None,
    index: Annotated[str | None, typer.Option(help="index to answer from (default: the gateway's)")] = None,
    llm: Annotated[str | None, typer.Option(help="answer with this LLM (or `extractive`)")] = None,
    k: Annotated[int | None, typer.Option("-k", help="chunks to retrieve")] = None,
    stream: Annotated[bool, typer.Option("--stream", help="print the answer as it arrives")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="the answer as JSON (with --stream: one event per line)")] = False,
    api_key: Annotated[
        str | None, typer.Option(help="API key for a gateway with auth enabled (default: DOCENT_API_KEY)", show_default=False)
    ] = None,
) -> None:
    """Ask a running gateway (`docent serve`) a question; prints the answer and its sources."""
    from services.gateway.client import GatewayClient, GatewayError

    if not question.strip():
        raise _fail("the question is empty", USAGE_ERROR)
    with _clear_errors():
        settings = _settings()
    options = {key: value for key, value in {"llm": llm, "num_chunks": k}.items() if value is not None}
    body = {"query": question, "index": index, "options": options}
    client = GatewayClient(url or settings.serving.url, api_key=api_key or settings.api_key)
    try:
        if stream:
            _print_stream(client.stream(body), as_json)
        else:
            answer = client.query(body)
            print(json.dumps(answer)) if as_json else _print_answer(answer)
    except GatewayError as exc:
        code = USAGE_ERROR if 400 <= exc.status < 500 else RUNTIME_ERROR
        raise _fail(exc.message, code) from None
    finally:
        client.close()


def _print_stream(events, as_json: bool) -> None:
    sources: list[dict] = []
    for event, data in events:
        if as_json:
            print(json.dumps({"event": event, "data": data}), flush=True)
        elif event == "sources":
            sources = data["sources"]
        elif event == "token":
            console.print(data["text"], end="", highlight=False, soft_wrap=True)
        elif event == "fallback":
            errors.print(f"\n[yellow]{data['llm']} failed ({data['reason']}); trying the next LLM[/]")
        elif event == "done":
            console.print()
            _print_sources(sources)
            _print_footer(data)
        elif event == "error":
            console.print()
            raise _fail(f"the answer failed midway: {data['message']}", RUNTIME_ERROR)


def _print_answer(answer: dict) -> None:
    console.print(answer["answer"], highlight=False, soft_wrap=True)
    _print_sources(answer["sources"])
    _print_footer(answer)


def _print_sources(sources: list[dict]) -> None:
    if sources:
        console.print("\n[bold]Sources[/]")
    for source in sources:
        console.print(f"  [{source['number']}] {source['title']}  [cyan]{source['source']}[/]", highlight=False)


def _print_footer(answer: dict) -> None:
    usage, timings = answer["usage"], answer["timings_ms"]
    fallbacks = "".join(f"; {f['llm']} failed: {f['reason']}" for f in answer.get("fallbacks", []))
    console.print(
        f"\n[dim]answered by {answer['llm']} ({answer['route']['reason']}{fallbacks}) · "
        f"{usage['prompt_tokens']}+{usage['completion_tokens']} tokens · ${answer['cost']:.5f} · "
        f"{timings.get('total', 0):.0f} ms[/]",
        highlight=False,
    )


train_app = typer.Typer(help="Train the reranker's tag classifier or the router.", no_args_is_help=True)
eval_app = typer.Typer(
    help="Score a configuration on an eval set; write reference answers or a golden eval set; score the router.",
    no_args_is_help=True,
)
app.add_typer(train_app, name="train")
app.add_typer(eval_app, name="eval")

# The reference's figures (ray-assistant-guide.md), printed beside ours.
REFERENCE_RERANKER = {"precision": 0.917, "recall": 0.917, "f1": 0.915}
REFERENCE_ROUTER = {"precision": 0.919, "recall": 0.929, "f1": 0.923}


@contextmanager
def _training_errors():
    from docent.linear_text import ArtifactError
    from services.reranker.training import TrainingDataError
    from services.router.router import RoutingDataError

    with _clear_errors():
        try:
            yield
        except (TrainingDataError, RoutingDataError) as exc:
            raise _fail(str(exc), USAGE_ERROR) from None
        except ArtifactError as exc:
            raise _fail(str(exc), RUNTIME_ERROR) from None


def _metrics_table(title: str, ours: dict, reference: dict) -> Table:
    table = Table("metric", "docent", "reference", title=title, title_justify="left")
    for name in ("precision", "recall", "f1"):
        table.add_row(name, f"{ours[name]:.3f}", f"{reference[name]:.3f}")
    return table


@train_app.command("reranker")
def train_reranker(
    data: Annotated[Path, typer.Option(help="JSON array of {question, source} (e.g. embedding_qa.json)")],
    base_url: Annotated[str | None, typer.Option(help="docs URL whose first path segment is the tag")] = None,
    output: Annotated[Path | None, typer.Option(help="artifact path (default: from settings)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object for scripts")] = False,
) -> None:
    """Train the tag classifier: stratified 80/20 split (seed 1234), weighted scores, sanity checks."""
    from services.reranker.training import load_qa_pairs
    from services.reranker.training import train_reranker as train

    with _training_errors():
        settings = _settings(rerank={"base_url": base_url, "artifact": output})
        with console.status("training the tag classifier…"):
            result = train(load_qa_pairs(data), settings.rerank.base_url)
        path = settings.model_artifact("reranker")
        if result.sanity_passed:
            result.classifier.model.save(path)
    if as_json:
        print(json.dumps({"metrics": result.metrics, "sanity_passed": result.sanity_passed, "artifact": str(path) if result.sanity_passed else None,
                          "sanity": [dict(zip(("question", "expected", "predicted", "probability"), row)) for row in result.sanity]}))
    else:
        console.print(_metrics_table(f"held-out 20 % ({result.metrics['test_rows']} rows), weighted", result.metrics, REFERENCE_RERANKER))
        checks = Table("", "question", "expected", "predicted", title="minimum-functionality checks", title_justify="left")
        for question, expected, predicted, probability in result.sanity:
            mark = "[green]✓[/]" if expected == predicted else "[red]✗[/]"
            checks.add_row(mark, question, expected, f"{predicted} ({probability:.0%})")
        console.print(checks)
    if not result.sanity_passed:
        raise _fail("a minimum-functionality check failed: the model was not saved", RUNTIME_ERROR)
    if not as_json:
        console.print(f"saved {path}")


@train_app.command("router")
def train_router(
    data: Annotated[
        Path | None, typer.Option(help="JSON lines of {question, target} (1: open-source LLM, 0: strong)")
    ] = None,
    from_eval: Annotated[
        tuple[Path, Path] | None,
        typer.Option("--from-eval", help="OSS.json STRONG.json: two `docent eval run --judge` evaluations of the same questions"),
    ] = None,
    tolerance: Annotated[
        float | None, typer.Option(min=0, help="with --from-eval: label 1 where OSS quality ≥ strong quality − this")
    ] = None,
    labels_out: Annotated[Path | None, typer.Option(help="with --from-eval: also write the labels as JSON lines")] = None,
    output: Annotated[Path | None, typer.Option(help="artifact path (default: from settings)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object for scripts")] = False,
) -> None:
    """Train the router: cross-validated scores (5 folds, fewer for a small label set), then a fit on all rows.

    Labels come from --data, or from --from-eval: the system's own judgements of an open-source and a strong LLM on the same eval set.
    """
    from evaluation.routing import labels_from_evaluations
    from services.router.router import load_routing_rows
    from services.router.router import train_router as train

    if (data is None) == (from_eval is None):
        raise _fail("give --data FILE or --from-eval OSS.json STRONG.json (one of them)", USAGE_ERROR)
    with _training_errors():
        settings = _settings(router={"artifact": output, "label_tolerance": tolerance})
        labels = None
        if from_eval is not None:
            labels = labels_from_evaluations(*from_eval, settings.router.label_tolerance)
            if labels_out is not None:
                labels_out.write_text(labels.to_jsonl(), encoding="utf-8")
        rows = labels.rows if labels is not None else load_routing_rows(data)
        router, metrics = train(rows)
        path = router.model.save(settings.model_artifact("router"))
    source = {} if labels is None else {
        "labels": {"rows": len(labels.rows), "open_source": sum(t for _, t in labels.rows),
                   "unscored": labels.unscored, "unmatched": labels.unmatched}}
    if as_json:
        print(json.dumps({"metrics": metrics, "artifact": str(path)} | source))
        return
    if labels is not None:
        counts = source["labels"]
        console.print(f"labels from evaluations: {counts['rows']} questions, {counts['open_source']} to the open-source "
                      f"LLM (tolerance {settings.router.label_tolerance}); {labels.unscored} unscored and "
                      f"{labels.unmatched} unmatched left out")
    title = f"{metrics['folds']}-fold cross-validation (positive: open-source)"
    console.print(_metrics_table(title, metrics, REFERENCE_ROUTER))
    console.print(f"saved {path}")


@eval_app.command("router")
def eval_router(
    data: Annotated[Path, typer.Option(help="JSON lines of {question, target}")],
    model: Annotated[Path | None, typer.Option(help="artifact path (default: from settings)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object for scripts")] = False,
) -> None:
    """Score the trained router on a labelled file."""
    from services.router.router import Router, evaluate_router, load_routing_rows

    with _training_errors():
        settings = _settings(router={"artifact": model})
        router = Router.load(settings.model_artifact("router"), settings.router.threshold)
        metrics = evaluate_router(router, load_routing_rows(data))
    if as_json:
        print(json.dumps({"metrics": metrics}))
        return
    console.print(_metrics_table(f"{metrics['rows']} questions (positive: open-source)", metrics, REFERENCE_ROUTER))
    console.print(f"routed to the open-source LLM: {metrics['routed_to_oss']:.1%}")


EVAL_RUNS_DIR = Path("eval-runs")


@eval_app.command("run")
def eval_run(
    eval_file: Annotated[
        str, typer.Option("--eval", help="eval set: JSON lines (or array) of {question, source}; a path or s3:// URI")
    ],
    references: Annotated[
        str | None, typer.Option(help="reference answers: JSON array (or lines) of {question, answer}; a path or s3:// URI")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="folder of the run's files (default: ./eval-runs/INDEX)")] = None,
    index: Annotated[str | None, typer.Option(help="index to answer from (default: from settings)")] = None,
    num_chunks: Annotated[int | None, typer.Option(min=0, help="chunks retrieved per question (0: no context)")] = None,
    lexical_k: Annotated[int | None, typer.Option(min=0, help="BM25 hits joined to the semantic ones")] = None,
    fusion: Annotated[str | None, typer.Option(help="reference | rrf")] = None,
    strategy: Annotated[str | None, typer.Option(help="chunks | sentence-window | parent-section")] = None,
    rerank: Annotated[bool | None, typer.Option("--rerank/--no-rerank", help="rerank (default: when trained)")] = None,
    system_prompt: Annotated[str | None, typer.Option(help="the generator's system prompt")] = None,
    llm: Annotated[str | None, typer.Option(help="answer with this LLM (or `extractive`), not the routed one")] = None,
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="questions answered at once (default: evaluation.concurrency)")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="only the first N questions")] = None,
    judge: Annotated[
        str | None, typer.Option(help="score answers 1–5 against the references with this configured LLM "
                                 "(default: evaluation.judge)")
    ] = None,
    ragas: Annotated[bool, typer.Option(
        "--ragas", help="also grade faithfulness, answer relevancy, context precision and recall with the judge LLM "
        "(--judge, or evaluation.judge)")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object for scripts")] = False,
) -> None:
    """Answer an eval set with one configuration and score it offline; re-run to resume a stopped run.

    The configuration is the settings (`docent --config FILE`) with the options given here.

    Retrieval: retrieval_score (gold page retrieved), recall@k, MRR, nDCG, over the questions with a gold source (an empty `source`: none).

    Answers, where a reference exists: token F1 and embedding similarity to the reference;
    with --judge, quality_score: an LLM's 1–5 grade (unscored: replies it could not grade).

    With --ragas, Ragas-style metrics graded by the judge LLM: faithfulness and answer_relevancy of every answer; context_precision and context_recall where a reference exists.
    """
    from evaluation.judge import Judge
    from evaluation.runner import load_references, open_eval_set, run_eval
    from ingest.remote import fetch

    with eval_errors():
        settings = _settings(
            index=index,
            retrieval={"num_chunks": num_chunks, "lexical_k": lexical_k, "fusion": fusion, "strategy": strategy},
            rerank={"enabled": rerank},
            generation={"system_prompt": system_prompt},
            evaluation={"judge": judge, "concurrency": concurrency},
        )
        judges = {m.name: m for m in settings.generation.llms}
        judge = settings.evaluation.judge
        if judge is not None and judge not in judges:
            raise _fail(f"unknown judge {judge!r}; configured LLMs: {', '.join(judges) or 'none'}", USAGE_ERROR)
        if ragas and judge is None:
            raise _fail("--ragas needs a judge LLM: --judge NAME, or evaluation.judge in the settings", USAGE_ERROR)
        eval_set = open_eval_set(fetch(eval_file, settings))
        answers = load_references(fetch(references, settings)) if references else {}
        out = out or EVAL_RUNS_DIR / settings.index_name
        progress = CountProgress("answering", enabled=not as_json)
        grader = Judge(judges[judge], settings.evaluation.judge_attempts) if judge is not None else None
        scorer = None
        if ragas:
            from evaluation.ragas import RagasScorer
            from services.embedder.model import load_embedder

            scorer = RagasScorer(judges[judge], load_embedder(settings.embedding),
                                 settings.evaluation.judge_attempts, settings.evaluation.relevancy_questions)

        async def evaluate():
            try:
                return await run_eval(settings, eval_set, answers, out, settings.evaluation.concurrency, limit, progress, llm=llm,
                                      judge=grader, ragas=scorer)
            finally:
                for closing in (grader, scorer):
                    if closing is not None:
                        await closing.aclose()

        try:
            report = asyncio.run(evaluate())
        except KeyboardInterrupt:
            raise _fail(f"interrupted; the answers so far are in {out}: the same command continues", 130) from None
        finally:
            progress.stop()
    if as_json:
        print(json.dumps({"evaluation": str(report.evaluation), "responses": str(report.responses),
                          "asked": report.asked, "aggregates": report.aggregates}))
        return
    console.print(_eval_table(report.aggregates, settings.index_name))
    failed = report.aggregates["all"]["errors"]
    if failed:
        console.print(f"[yellow]{failed} question(s) failed[/]: see `error` in {report.responses}; a re-run asks again")
    console.print(f"answers: {report.responses}\nscores:  {report.evaluation}", highlight=False)


EVAL_SUMMARY = (  # label, aggregate, format
    ("questions", "questions", "{}"), ("answered", "answered", "{}"), ("errors", "errors", "{}"),
    ("with gold source", "with_gold", "{}"),  # the retrieval rows below average over these questions only
    ("retrieval_score", "retrieval_score", "{:.3f}"), ("recall@1", "recall@1", "{:.3f}"),
    ("recall@5", "recall@5", "{:.3f}"), ("MRR", "mrr", "{:.3f}"), ("nDCG", "ndcg", "{:.3f}"),
    ("token F1", "token_f1", "{:.3f}"), ("answer similarity", "answer_similarity", "{:.3f}"),
    ("quality_score (1–5)", "quality_score", "{:.2f}"), ("unscored", "unscored", "{}"),
    ("faithfulness", "faithfulness", "{:.3f}"), ("answer relevancy", "answer_relevancy", "{:.3f}"),
    ("context precision", "context_precision", "{:.3f}"), ("context recall", "context_recall", "{:.3f}"),
    ("ragas unscored", "ragas_unscored", "{}"),
    ("mean latency (ms)", "mean_latency_ms", "{:.0f}"), ("total cost ($)", "total_cost", "{:.4f}"),
)


def _eval_table(aggregates: dict, index: str) -> Table:
    columns = (Column("all", justify="right"), Column("in corpus", justify="right"))
    every = aggregates["all"]
    without_gold = every["questions"] - every.get("with_gold", every["questions"])
    caption = (f"{without_gold} question(s) without a gold source: no retrieval scores, left out of the retrieval means"
               if without_gold else None)
    table = Table("", *columns, title=f"eval run · index {index}", title_justify="left", caption=caption,
                  caption_justify="left")
    subsets = (every, aggregates["in_corpus"] or {})
    for label, key, form in EVAL_SUMMARY:
        table.add_row(label, *("–" if s.get(key) is None else form.format(s[key]) for s in subsets))
    return table


from docent.commands.experiment import experiment_app

app.add_typer(experiment_app, name="experiment")

from docent.commands.finetune import finetune_app

app.add_typer(finetune_app, name="finetune")


from docent.commands.keys import keys_app
from docent.commands.flywheel import flywheel_app
from docent.commands.slack import slack

app.command("slack")(slack)

app.add_typer(flywheel_app, name="flywheel")

app.add_typer(keys_app, name="keys")

from docent.commands import evaluate as _evaluate_commands

eval_app.command("references")(_evaluate_commands.references)
eval_app.command("golden")(_evaluate_commands.golden)


def run() -> None:
    try:
        app()
    except BrokenPipeError:
        sys.exit(0)
