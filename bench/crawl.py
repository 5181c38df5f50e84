"""Crawl throughput: a docs site of Ray docs pages served over local HTTP, ingested by URL, then again unchanged.

    python bench/crawl.py [--pages 400] [--concurrency 4] [--rate 1000] [--sitemap | --links] [--json]

The site: the first N Markdown and reST sources of ../shared/corpora/ray-docs-2.7, each
rendered into an MkDocs-Material-shaped page (sidebar, header, footer; Markdown through
markdown-it, reST as paragraphs), directory URLs, with a sitemap (or, with --links, only
links from page to page). It is served by the tests' local site server (ETag,
Last-Modified, 304s). Prints pages/s of the first crawl (every page downloaded), of the
unchanged re-crawl (every page a 304), and the whole ingest's seconds. A real site adds
its network latency; `crawl.requests_per_second` (8 by default) is the bound there.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import tempfile
import time
from pathlib import Path

from common import RAY_DOCS, emit_json, require_path

from docent.db import connect
from docent.settings import load_settings
from docent.store import IndexStore
from ingest.pipeline import run_ingest
from tests.site_server import SiteServer  # the tests' local site: ETag, Last-Modified, 304s

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title></head><body>
<header class="md-header"><nav>Ray docs <a href="{home}">Home</a></nav></header>
<main class="md-main"><div class="md-sidebar"><nav class="md-nav">{nav}</nav></div>
<article class="md-content__inner md-typeset"><h1 id="top">{title}</h1>
{body}
</article></main><footer class="md-footer">footer</footer></body></html>
"""


def build_site(target: Path, pages: int, sitemap: bool) -> list[str]:
    from markdown_it import MarkdownIt

    renderer = MarkdownIt("commonmark")
    sources = sorted(
        p for p in RAY_DOCS.rglob("*")
        if p.suffix in (".md", ".rst") and not any(part.startswith(("_", ".")) for part in p.relative_to(RAY_DOCS).parts)
    )[:pages]
    paths = [s.relative_to(RAY_DOCS).with_suffix("").as_posix() + "/" for s in sources]
    for number, (source, path) in enumerate(zip(sources, paths, strict=True)):
        text = source.read_text(errors="replace")
        body = renderer.render(text) if source.suffix == ".md" else "".join(
            f"<p>{html.escape(block)}</p>\n" for block in text.split("\n\n") if block.strip())
        # Each page links to its neighbours: with --links, the crawl has to walk the whole chain.
        nav = " ".join(f'<a href="/site/{paths[i]}">{paths[i]}</a>' for i in (number - 1, number + 1) if 0 <= i < len(paths))
        page = target / "site" / path / "index.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(PAGE.format(title=html.escape(source.stem), home="/site/", nav=nav, body=body))
    index = target / "site" / "index.html"
    index.write_text(PAGE.format(title="Home", home="/site/", nav=f'<a href="/site/{paths[0]}">start</a>', body="<p>Home</p>"))
    if sitemap:
        urls = "".join(f"<url><loc>{{{{base}}}}/site/{p}</loc></url>" for p in ["", *paths])
        (target / "site" / "sitemap.xml").write_text(
            f'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{urls}</urlset>')
    return paths


async def _drop(settings) -> None:
    conn = await connect(settings)
    try:
        store = IndexStore(conn)
        if await store.get(settings.index_name):
            await store.drop(settings.index_name)
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rate", type=float, default=1000.0, help="crawl.requests_per_second (the local server is the limit)")
    parser.add_argument("--links", action="store_true", help="no sitemap: follow links page by page")
    parser.add_argument("--index", default="bench-crawl")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    require_path(RAY_DOCS, "corpus")
    settings = load_settings(None, index=args.index,
                             crawl={"concurrency": args.concurrency, "requests_per_second": args.rate})
    with tempfile.TemporaryDirectory(prefix="bench-crawl-") as scratch:
        paths = build_site(Path(scratch), args.pages, sitemap=not args.links)
        server = SiteServer(Path(scratch)).start()
        try:
            asyncio.run(_drop(settings))
            url = f"{server.base}/site/"
            started = time.perf_counter()
            first = run_ingest(url, settings)
            first_seconds = time.perf_counter() - started
            again = run_ingest(url, settings)
        finally:
            server.stop()
    figures = {
        "pages": first.crawl.pages,
        "site_pages": len(paths) + 1,
        "via": "sitemap" if first.crawl.via_sitemap else "links",
        "concurrency": args.concurrency,
        "crawl_seconds": round(first.crawl.seconds, 1),
        "crawl_pages_per_s": round(first.crawl.pages_per_second, 1),
        "ingest_seconds": round(first_seconds, 1),
        "chunks": first.chunks_added,
        "recrawl_seconds": round(again.crawl.seconds, 1),
        "recrawl_pages_per_s": round(again.crawl.pages_per_second, 1),
        "recrawl_unchanged": again.crawl.unchanged,
        "reingest_seconds": round(again.seconds, 1),
    }
    width = max(map(len, figures))
    for name, value in figures.items():
        print(f"{name:<{width}}  {value}")
    if args.json:
        emit_json(figures)


if __name__ == "__main__":
    main()
