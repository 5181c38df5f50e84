"""The `docent` command line."""

from __future__ import annotations

import asyncio
import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from docent.settings import ConfigFileError, Settings, load_settings

app = typer.Typer(
    help="docent: question answering over documentation. Ingest docs, inspect indexes, search.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
errors = Console(stderr=True)

USAGE_ERROR = 2
RUNTIME_ERROR = 1


class _State:
    config: Path | None = None


@app.callback()
def main(
    config: Annotated[
        Optional[Path], typer.Option("--config", "-c", help="YAML settings file (also: DOCENT_CONFIG)", envvar="DOCENT_CONFIG")
    ] = None,
) -> None:
    _State.config = config


def _fail(message: str, code: int) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


@contextmanager
def _clear_errors():
    """Known failures become one-line messages and exit codes, never tracebacks."""
    from docent.db import DatabaseError
    from ingest.errors import IngestError, SourceError
    from services.embedder.model import EmbeddingModelError
    from services.retriever.lexical import LexicalIndexError

    try:
        yield
    except (SourceError, ConfigFileError) as exc:
        raise _fail(str(exc), USAGE_ERROR) from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise _fail(f"invalid settings: {problems}", USAGE_ERROR) from None
    except (DatabaseError, EmbeddingModelError, LexicalIndexError, IngestError) as exc:
        raise _fail(str(exc), RUNTIME_ERROR) from None
    except KeyboardInterrupt:
        raise _fail("interrupted; documents written so far are kept, re-run to finish", 130) from None


def _settings(**overrides: Any) -> Settings:
    return load_settings(_State.config, **overrides)


class _RichProgress:
    """One bar per ingest stage; a stage is complete when the next one starts."""

    _labels = {"scan": "Scanning files", "index": "Parsing, embedding, writing", "bm25": "Building BM25 index"}

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
    path: Annotated[Path, typer.Argument(help="docs folder (or one file) to index")],
    base_url: Annotated[
        Optional[str], typer.Option(help="public URL of PATH: files map to URL + path with .html + #anchor")
    ] = None,
    index: Annotated[Optional[str], typer.Option(help="index name (default: from model and chunking)")] = None,
    chunk_size: Annotated[Optional[int], typer.Option(help="maximum chunk length")] = None,
    chunk_overlap: Annotated[Optional[int], typer.Option(help="overlap between neighbouring chunks")] = None,
    chunk_unit: Annotated[Optional[str], typer.Option(help="chars | tokens (of the embedding model)")] = None,
    embedding_model: Annotated[Optional[str], typer.Option(help="sentence-transformers name or path")] = None,
    exclude: Annotated[
        Optional[list[str]], typer.Option(help="glob of paths to leave out, relative to PATH (repeatable; replaces the configured list)")
    ] = None,
    prune: Annotated[bool, typer.Option(help="remove documents whose files are gone")] = False,
) -> None:
    """Index a docs tree: only new and changed files are processed."""
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
    index: Annotated[Optional[str], typer.Option(help="index name (default: from settings)")] = None,
    k: Annotated[Optional[int], typer.Option("-k", help="chunks to return")] = None,
    lexical_k: Annotated[Optional[int], typer.Option(help="BM25 hits to join (hybrid)")] = None,
    mode: Annotated[Optional[str], typer.Option(help="semantic | lexical | hybrid")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object for scripts")] = False,
) -> None:
    """Retrieve the chunks that best match a question."""
    from services.retriever.search import search_index

    if not query.strip():
        raise _fail("the query is empty", USAGE_ERROR)
    if mode is not None and mode not in ("semantic", "lexical", "hybrid"):
        raise _fail(f"--mode must be semantic, lexical or hybrid, not {mode!r}", USAGE_ERROR)
    with _clear_errors():
        settings = _settings(index=index, retrieval={"mode": mode, "num_chunks": k, "lexical_k": lexical_k})
        hits = asyncio.run(search_index(query, settings))
    if as_json:
        print(json.dumps({"query": query, "index": settings.index_name, "results": [h.model_dump(include={"rank", "score", "source", "text", "chunk_id"}) for h in hits]}))
        return
    table = Table("#", "score", "source / text", show_lines=True)
    for hit in hits:
        preview = " ".join(hit.text.split())[:240]
        table.add_row(str(hit.rank), f"{hit.score:.3f}", f"[cyan]{hit.source}[/]\n{preview}")
    console.print(table)


def run() -> None:
    try:
        app()
    except BrokenPipeError:
        sys.exit(0)
