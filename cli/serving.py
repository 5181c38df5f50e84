"""`docent serve | query`: run the query service, ask it a question."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from cli.support import (
    RUNTIME_ERROR,
    USAGE_ERROR,
    CliState,
    clear_errors,
    cli_settings,
    console,
    errors,
    fail,
)
from docent.types import NO_LLM

SNIPPET_CHARS = 160  # of a cited source's snippet under the answer


def default_serve_config() -> Path:
    """The Serve config shipped in the package: `docent serve` works from any directory."""
    from importlib.resources import files

    return Path(str(files("services.gateway") / "serve.yaml"))


def serve(
    serve_config: Annotated[
        Path | None,
        typer.Option(
            "--serve-config",
            help="Ray Serve config file: deployments, replicas, CPUs/GPUs (default: the one shipped with docent, "
            "services/gateway/serve.yaml); docent's own settings come from the global --config",
            show_default=False,
        ),
    ] = None,
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
    from docent.errors import UsageError
    from docent.ray_runtime import cluster_hosts, ensure_ray
    from docent.serve_config import apply_serve_environment, deploy, forget_serving, load_serve_config, record_serving

    with clear_errors():
        settings = cli_settings(index=index)
        app_args: dict[str, Any] = {"index": index} if index else {}
        if CliState.config:
            app_args["settings"] = str(CliState.config.resolve())
        if not settings.database_url:  # start the embedded server once, here, for every replica
            app_args["database_url"] = database_url(settings)
        config = load_serve_config(serve_config or default_serve_config(), host, port, app_args)
        apply_serve_environment(settings)
        ensure_ray(settings)
        hosts = cluster_hosts()
        if not settings.database_url and len(hosts) > 1:
            import ray

            ray.shutdown()
            raise UsageError(
                f"the Ray cluster spans {len(hosts)} machines ({', '.join(sorted(hosts))}), and the embedded database is "
                "reachable from this one only: give the replicas a PostgreSQL they can all reach (DATABASE_URL)"
            )
    # From here SIGTERM stops Serve as Ctrl-C does, during the deploy too: installed after Ray's own
    # handlers (ray.init sets some), or a SIGTERM that comes early aborts the process instead.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    from ray import serve as ray_serve

    try:
        with clear_errors(interrupted="interrupted while deploying; Serve was stopped"):
            with console.status("starting the deployments (models load, the index warms up)…"):
                deploy(config, timeout)
            _print_serving(config, settings)
            record_serving(settings.data_dir, _local_url(config))
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                console.print("stopping…")
    finally:
        forget_serving(settings.data_dir)
        ray_serve.shutdown()
        import ray

        ray.shutdown()


def _local_url(config) -> str:
    """Where a client on this machine reaches the gateway (a wildcard address is reached by loopback)."""
    host = config.http_options.host
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:{config.http_options.port}"


def _print_serving(config, settings) -> None:
    url = f"http://{config.http_options.host}:{config.http_options.port}"
    llms = ", ".join(llm.name for llm in settings.generation.llms) or "none: extractive answers"
    console.print(f"[bold green]docent is serving[/] index [cyan]{settings.index_name}[/] at [link]{url}[/]")
    console.print(f"  POST {url}/query · {url}/stream (SSE) · {url}/docs · {url}/readyz · {url}/metrics")
    console.print(f"  LLMs: {llms}.  Ctrl-C stops.")


def query(
    question: Annotated[str, typer.Argument(help="the question")],
    url: Annotated[
        str | None,
        typer.Option(
            help="gateway URL (default: DOCENT_URL, else serving.url when set, else the `docent serve` running here, "
            "whatever its port, else http://127.0.0.1:8000)",
            show_default=False,
        ),
    ] = None,
    index: Annotated[str | None, typer.Option(help="index to answer from (default: the gateway's)")] = None,
    llm: Annotated[str | None, typer.Option(help="answer with this LLM (or `extractive`)")] = None,
    k: Annotated[int | None, typer.Option("-k", help="chunks to retrieve")] = None,
    conversation: Annotated[
        str | None,
        typer.Option(
            "--conversation", metavar="ID",
            help="continue this conversation: the id an earlier answer printed (a follow-up is read with its turns)",
            show_default=False,
        ),
    ] = None,
    stream: Annotated[bool, typer.Option("--stream", help="print the answer as it arrives")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="the answer as JSON (with --stream: one event per line)")] = False,
    api_key: Annotated[
        str | None, typer.Option(help="API key for a gateway with auth enabled (default: DOCENT_API_KEY)", show_default=False)
    ] = None,
) -> None:
    """Ask a running gateway (`docent serve`) a question; prints the answer, its sources and its conversation.

    Continue the conversation with `--conversation ID` (printed under each answer): a follow-up such as "and how do I turn that off?" is then searched for as a question that stands alone.
    """
    from docent.client import DocentClient
    from docent.serve_config import gateway_url

    if not question.strip():
        raise fail("the question is empty", USAGE_ERROR)
    with clear_errors():
        settings = cli_settings()
    asked = {"index": index, "conversation_id": conversation, "llm": llm, "num_chunks": k}
    with clear_errors(interrupted="interrupted"), DocentClient(url or gateway_url(settings), api_key or settings.api_key) as client:
        if stream:
            _print_stream(client.stream(question, **asked), as_json)
        else:
            answer = client.query(question, **asked)
            print(answer.model_dump_json()) if as_json else _print_answer(answer.model_dump())


def _print_stream(events, as_json: bool) -> None:
    from docent.client import StreamDone, StreamError, StreamFallback, StreamSources, StreamToken

    sources: list[dict] = []
    for event in events:
        if as_json:
            print(json.dumps({"event": event.event, "data": event.model_dump(mode="json", exclude_unset=True)}), flush=True)
        elif isinstance(event, StreamSources):
            sources = [s.model_dump() for s in event.sources]
            _print_standalone(event.question, event.standalone_question)
        elif isinstance(event, StreamToken):
            console.print(event.text, end="", highlight=False, soft_wrap=True)
        elif isinstance(event, StreamFallback):
            errors.print(f"\n[yellow]{escape(event.llm)} failed ({escape(event.reason)}); trying the next LLM[/]")
        elif isinstance(event, StreamDone):
            console.print()
            done = event.model_dump()
            cited = {s["number"]: s for s in done["sources"]}  # which were cited, known only now
            _print_sources([{**s, **cited.get(s["number"], {})} for s in sources], done)
            _print_footer(done)
            _print_conversation(event.conversation_id)
        elif isinstance(event, StreamError):
            console.print()
            raise fail(f"the answer failed midway: {event.message}", RUNTIME_ERROR)


def _print_standalone(question: str, standalone: str) -> None:
    """What was searched for, when the follow-up was rewritten to stand alone."""
    if standalone and standalone != question:
        console.print(f"[dim]searched for: {escape(standalone)}[/]\n", highlight=False)


def _print_conversation(conversation_id: str) -> None:
    if conversation_id:
        console.print(
            f"[dim]conversation: {conversation_id} (continue with --conversation {conversation_id})[/]", highlight=False
        )


def _print_answer(answer: dict) -> None:
    _print_standalone(answer["question"], answer.get("standalone_question", ""))
    console.print(answer["answer"], highlight=False, soft_wrap=True)
    _print_sources(answer["sources"], answer)
    _print_footer(answer)
    _print_conversation(answer.get("conversation_id", ""))


def _print_sources(sources: list[dict], answer: dict) -> None:
    """Unsupported citations flagged; the cited sources with the snippet used; the rest on one line.

    An abstained answer lists its nearest pages in its text: no sources follow it."""
    if answer.get("abstained"):
        return
    for citation in answer.get("citations", []):
        if not citation["supported"]:
            numbers = ", ".join(f"[{n}]" for n in citation["sources"])
            console.print(f"\n[yellow]⚠ {numbers} does not seem to say:[/] {escape(citation['sentence'])}", highlight=False)
    cited = [s for s in sources if s.get("cited")]
    rest = [s for s in sources if not s.get("cited")]
    if cited:
        console.print("\n[bold]Cited sources[/]")
    for source in cited:
        console.print(f"  [{source['number']}] {escape(source['title'])}  [cyan]{source['source']}[/]", highlight=False)
        if source.get("snippet"):
            console.print(f"      [dim]“{escape(_shorten(source['snippet']))}”[/]", highlight=False)
    if rest:
        label = "Other sources" if cited else "Sources"
        console.print(f"\n[bold]{label}[/] " + " · ".join(f"[{s['number']}] {escape(s['title'])}" for s in rest), highlight=False)


def _shorten(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= SNIPPET_CHARS else flat[: SNIPPET_CHARS - 1].rstrip() + "…"


def _print_footer(answer: dict) -> None:
    usage, timings = answer["usage"], answer["timings_ms"]
    fallbacks = "".join(f"; {f['llm']} failed: {f['reason']}" for f in answer.get("fallbacks", []))
    if answer.get("abstained") and answer["llm"] == NO_LLM:
        who = "not in the docs: no LLM was asked"
    else:
        who = f"answered by {answer['llm']} ({answer['route']['reason']}{fallbacks})"
    console.print(
        f"\n[dim]{who} · {usage['prompt_tokens']}+{usage['completion_tokens']} tokens · ${answer['cost']:.5f} · "
        f"{timings.get('total', 0):.0f} ms[/]",
        highlight=False,
    )


