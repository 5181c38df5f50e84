"""`docent ingest | reembed | indexes | drop-index | search`: build an index from docs, look after it, search it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, ClassVar

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from cli.support import (
    USAGE_ERROR,
    clear_errors,
    cli_settings,
    console,
    errors,
    fail,
)
from docent.types import ChunkUnit, RetrievalMode, Strategy, UrlStyle


class _RichProgress:
    """One bar per ingest stage; a stage is complete when the next one starts."""

    _labels: ClassVar[dict[str, str]] = {"download": "Syncing from object storage", "scan": "Scanning files", "index": "Parsing, embedding, writing", "bm25": "Building BM25 index", "embed": "Embedding the chunks again", "crawl": "Crawling the site"}

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


def ingest(
    path: Annotated[str, typer.Argument(help="docs folder, one file, s3://bucket/prefix, or a docs site's https://…/ to index")],
    base_url: Annotated[
        str | None, typer.Option(help="public URL of PATH: a file's source is its page under URL (see --url-style) + #anchor")
    ] = None,
    url_style: Annotated[
        UrlStyle | None,
        typer.Option(help="how the site publishes guide/setup.md: html → guide/setup.html (Sphinx, the default), "
                     "directory → guide/setup/ (MkDocs, Docusaurus), none → guide/setup; fixed per index"),
    ] = None,
    index: Annotated[str | None, typer.Option(help="index name (default: from model and chunking)")] = None,
    chunk_size: Annotated[int | None, typer.Option(help="maximum chunk length")] = None,
    chunk_overlap: Annotated[int | None, typer.Option(help="overlap between neighbouring chunks")] = None,
    chunk_unit: Annotated[ChunkUnit | None, typer.Option(help="chars, or tokens of the embedding model")] = None,
    embedding_model: Annotated[str | None, typer.Option(help="sentence-transformers name or path")] = None,
    exclude: Annotated[
        list[str] | None, typer.Option(help="glob of paths to leave out, relative to PATH (repeatable; replaces the configured list)")
    ] = None,
    prune: Annotated[bool, typer.Option(help="remove documents whose files are gone")] = False,
) -> None:
    """Index a docs tree: only new and changed files are processed.

    An s3://bucket/prefix source is mirrored under the data dir first (changed objects only; endpoint: ingest.s3_endpoint_url or AWS_ENDPOINT_URL).
    A site (http(s)://…/) is crawled into such a mirror: its sitemap, else its links under the URL; robots.txt obeyed; unchanged pages not downloaded again (settings: crawl.*).
    """
    from ingest.pipeline import IngestReport, run_ingest

    with clear_errors():
        settings = cli_settings(
            index=index,
            chunking={"chunk_size": chunk_size, "chunk_overlap": chunk_overlap, "unit": chunk_unit},
            embedding={"model": embedding_model},
            ingest={"exclude": exclude, "url_style": url_style},
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
    if report.crawl is not None:
        crawled = report.crawl
        table.add_row("site pages (" + ("sitemap" if crawled.via_sitemap else "links followed") + ")", str(crawled.pages))
        table.add_row("  downloaded / unchanged / gone", f"{crawled.downloaded} / {crawled.unchanged} / {crawled.removed}")
        if crawled.failed or crawled.disallowed:
            table.add_row("  failed / disallowed by robots.txt", f"{len(crawled.failed)} / {crawled.disallowed}")
        if crawled.truncated:
            table.add_row("  cut at crawl.max_pages", "yes (nothing removed)")
        table.add_row("  pages per second", f"{crawled.pages_per_second:.1f}")
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
    if len(report.embed_nodes) > 1:
        table.add_row("Ray nodes that embedded", str(len(report.embed_nodes)))
    console.print(table)
    if report.files_missing:
        console.print(f"{report.files_missing} indexed file(s) no longer exist under the path: add --prune to remove them")
    shown = 20
    failed = report.crawl.failed if report.crawl is not None else {}
    for url, reason in sorted(failed.items())[:shown]:
        console.print(f"[yellow]not read[/] {url}: {reason} (its last copy, if any, is kept)", highlight=False)
    for uri, reason in sorted(report.skipped.items())[:shown]:
        console.print(f"[yellow]skipped[/] {uri}: {reason}", highlight=False)
    if len(report.skipped) > shown:
        console.print(f"… and {len(report.skipped) - shown} more skipped files")


def reembed(
    source: Annotated[str, typer.Argument(help="existing index whose chunks are embedded again")],
    index: Annotated[str, typer.Option(help="name of the new index (an index holds one model's vectors)")],
    embedding_model: Annotated[str | None, typer.Option(help="sentence-transformers name or path (default: embedding.model)")] = None,
) -> None:
    """Build a new index with another embedding model from an existing index's chunks, without reading the docs again.

    Chunks, sources and content hashes are copied as they are, so a later `docent ingest` into the new index skips unchanged files.
    """
    from ingest.reembed import run_reembed

    with clear_errors():
        settings = cli_settings(index=index, embedding={"model": embedding_model})
        columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
        with Progress(*columns, console=errors, transient=False) as bar:
            progress = _RichProgress(bar)
            report = run_reembed(source, settings, progress)
            progress.finish()
    console.print(
        f"index {report.index}: {report.chunks} chunks of {report.documents} documents from {report.source_index}, "
        f"embedded with {report.model} in {report.seconds:.1f} s ({report.chunks_per_second:.1f} chunks/s)",
        highlight=False,
    )


def indexes(as_json: Annotated[bool, typer.Option("--json", help="one JSON object for scripts")] = False) -> None:
    """List every index with its configuration, document and chunk counts, size, last update and whether it is ready."""
    from docent.db import connect
    from docent.store import IndexStore

    async def fetch():
        conn = await connect(settings)
        try:
            return await IndexStore(conn).list()
        finally:
            await conn.close()

    with clear_errors():
        settings = cli_settings()
        found = asyncio.run(fetch())
    if as_json:
        print(json.dumps({"indexes": [i.model_dump() for i in found]}))
        return
    if not found:
        console.print("no indexes yet: run `docent ingest PATH`")
        return
    table = Table(
        Column("name", no_wrap=True), Column("model", overflow="fold"), "chunking", "docs", "chunks", "MiB",
        Column("updated", no_wrap=True), Column("state", no_wrap=True), caption="details: docent indexes --json",
    )
    for i in found:
        unit = "t" if i.chunk_unit == ChunkUnit.TOKENS else ""
        table.add_row(
            i.name, Path(i.embedding_model).name,
            f"{i.chunk_size}{unit}/{i.chunk_overlap}" + ("" if i.include_titles else " no titles"),
            str(i.documents), str(i.chunks), f"{i.size_bytes / 2**20:.1f}",
            (i.updated_at or "")[:10], "[yellow]incomplete[/]" if i.incomplete else "ready",
        )
    console.print(table)
    for i in found:
        if i.incomplete:
            console.print(f"[yellow]{i.name}[/]: {i.incomplete}", highlight=False)


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

    with clear_errors():
        settings = cli_settings()
        asyncio.run(drop())
    console.print(f"removed index {name}")


def search(
    query: Annotated[str, typer.Argument(help="the question")],
    index: Annotated[str | None, typer.Option(help="index name (default: from settings)")] = None,
    k: Annotated[int | None, typer.Option("-k", help="chunks to return")] = None,
    lexical_k: Annotated[int | None, typer.Option(help="BM25 hits to join (hybrid)")] = None,
    mode: Annotated[RetrievalMode | None, typer.Option(help="how to search (default: retrieval.mode)")] = None,
    strategy: Annotated[Strategy | None, typer.Option(help="text around each hit (default: retrieval.strategy)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object for scripts")] = False,
) -> None:
    """Retrieve the chunks that best match a question."""
    from services.retriever.search import search_index

    if not query.strip():
        raise fail("the query is empty", USAGE_ERROR)
    with clear_errors():
        settings = cli_settings(
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


