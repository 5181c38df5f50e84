"""`docent ingest https://…/`: fixture sites of two generators served over real HTTP, crawled, ingested, changed, re-ingested."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from docent.errors import SourceError
from docent.settings import Settings
from ingest.crawl import links_of, page_path, site_prefix, url_style_of
from ingest.pipeline import run_ingest
from services.retriever.search import search_index
from tests.conftest import FIXTURES
from tests.integration.test_ingest import snapshot
from tests.site_server import Failure, serve_copy

pytestmark = pytest.mark.integration

FAST = {"crawl": {"requests_per_second": 200, "retry_backoff_s": 0.05}}


@pytest.fixture
def site(tmp_path):
    server = serve_copy(FIXTURES / "sites", tmp_path / "www")
    yield server
    server.stop()


def texts(settings: Settings) -> str:
    return " ".join(text for _, text, _ in snapshot(settings).values())


def sources(settings: Settings) -> set[str]:
    return {source for _, _, source in snapshot(settings).values()}


def test_a_mkdocs_site_is_read_from_its_sitemap_obeying_robots_and_answers(ray_local, site, index_name):
    settings = Settings(index=index_name, **FAST)
    docs = f"{site.base}/mkdocs/docs/"
    report = run_ingest(docs, settings)

    crawled = report.crawl
    assert crawled.via_sitemap and crawled.pages == 3 and crawled.downloaded == 3 and crawled.disallowed == 1
    assert crawled.url_style == "directory" and report.files_read == 3
    found = sources(settings)
    assert f"{docs}guide/setup/#install-the-agent" in found  # the page's own heading ids, its own URL style
    assert f"{docs}guide/scaling/#autoscaling-the-worker-fleet" in found
    assert not any("private" in s or "elsewhere" in s for s in found)
    assert site.statuses("/mkdocs/docs/private/") == []  # robots.txt: never even asked
    body = texts(settings)
    assert "orbit-agent --join" in body
    for chrome in ("Made with Material", "Navigation:", "Search the site", "never indexed", "¶"):
        assert chrome not in body

    hits = asyncio_search("where does the agent read its TLS certificate?", settings)
    assert hits[0].source == f"{docs}guide/setup/#tls-certificates"


def asyncio_search(question: str, settings: Settings):
    import asyncio

    return asyncio.run(search_index(question, settings))


def test_a_changed_site_is_reingested_incrementally_and_pruned(ray_local, site, index_name):
    settings = Settings(index=index_name, **FAST)
    docs = f"{site.base}/mkdocs/docs/"
    run_ingest(docs, settings)
    site.log.clear()

    again = run_ingest(docs, settings)
    assert again.crawl.unchanged == 3 and again.crawl.downloaded == 0 and again.files_read == 0
    assert set(site.statuses("/mkdocs/docs/guide/setup/")) == {304}  # the ETag went back: nothing downloaded

    setup = site.root / "mkdocs/docs/guide/setup/index.html"
    setup.write_text(setup.read_text().replace("/etc/orbit/tls.pem", "/etc/orbit/certs/agent.pem"))
    sitemap = site.root / "mkdocs/docs/sitemap.xml"
    sitemap.write_text(sitemap.read_text().replace("<url><loc>{{base}}/mkdocs/docs/guide/scaling/</loc></url>\n", ""))
    (site.root / "mkdocs/docs/guide/scaling/index.html").unlink()
    changed = run_ingest(docs, settings, prune=True)

    assert changed.crawl.downloaded == 1 and changed.crawl.unchanged == 1 and changed.crawl.removed == 1
    assert changed.files_read == 1 and changed.files_removed == 1
    body = texts(settings)
    assert "/etc/orbit/certs/agent.pem" in body and "/etc/orbit/tls.pem" not in body
    assert not any("scaling" in s for s in sources(settings))


def test_a_docusaurus_site_without_sitemap_is_read_by_its_links(ray_local, site, index_name):
    settings = Settings(index=index_name, **FAST)
    docs = f"{site.base}/docusaurus/docs/"
    report = run_ingest(docs, settings)

    crawled = report.crawl
    assert not crawled.via_sitemap and crawled.pages == 3 and not crawled.failed
    found = sources(settings)
    # /docs/ only redirects (meta refresh); /guides/monitor (no slash) answers at /guides/monitor/
    assert f"{docs}guides/deploy/#rolling-upgrades" in found and f"{docs}guides/monitor/#metrics-endpoint" in found
    assert not any(s.rstrip("/").endswith("/docs") for s in found)
    body = texts(settings)
    assert "comet drain --node NAME" in body
    for chrome in ("Sidebar menu", "Edit this page", "Breadcrumbs", "Home / Guides", "Comet navbar", "Copyright", "On this page"):
        assert chrome not in body
    titles = {chunk.page_title for chunk in _chunks(settings)}
    assert "Deploying Comet" in titles  # the title in Docusaurus's own <header> is kept


def _chunks(settings: Settings):
    import asyncio

    from docent.db import connect
    from docent.store import IndexStore

    async def read():
        conn = await connect(settings)
        try:
            store = IndexStore(conn)
            return (await store.chunk_texts(await store.require(settings.index_name)))[1]
        finally:
            await conn.close()

    return asyncio.run(read())


def test_failing_pages_are_retried_then_reported_and_their_last_copy_kept(ray_local, site, index_name):
    settings = Settings(index=index_name, **FAST)
    docs = f"{site.base}/mkdocs/docs/"
    site.failures["/mkdocs/docs/guide/scaling/"] = Failure(503, times=2)
    site.failures["/mkdocs/docs/guide/setup/"] = Failure(429, times=1, retry_after="0")
    report = run_ingest(docs, settings)
    assert report.crawl.pages == 3 and not report.crawl.failed  # retried through both
    assert site.statuses("/mkdocs/docs/guide/scaling/") == [503, 503, 200]

    site.failures["/mkdocs/docs/guide/scaling/"] = Failure(500, times=10)
    again = run_ingest(docs, settings, prune=True)
    assert list(again.crawl.failed) == [f"{docs}guide/scaling/"] and "HTTP 500 after 4 tries" in again.crawl.failed[f"{docs}guide/scaling/"]
    assert any("scaling" in s for s in sources(settings))  # a page that failed is not a page that is gone


def test_unreachable_or_empty_sites_are_clear_errors(ray_local, site, index_name):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with pytest.raises(SourceError, match="cannot reach"):
        run_ingest(f"http://127.0.0.1:{closed_port}/docs/", Settings(index=index_name, **FAST))
    with pytest.raises(SourceError, match="no pages read"):
        run_ingest(f"{site.base}/nothing-here/", Settings(index=index_name, **FAST))

    cli = subprocess.run([sys.executable, "-m", "cli", "ingest", f"{site.base}/nothing-here/", "--index", index_name],
                         check=False, capture_output=True, text=True, env={**os.environ}, timeout=300)
    assert cli.returncode == 2 and "no pages read" in cli.stdout + cli.stderr and "Traceback" not in cli.stderr


def test_urls_map_to_mirror_files_and_back_by_the_sites_style():
    assert site_prefix("https://d.example/docs") == "https://d.example/docs/"
    assert site_prefix("https://d.example/docs/index.html") == "https://d.example/docs/"
    with pytest.raises(SourceError):
        site_prefix("ftp://d.example/docs/")
    prefix = "https://d.example/docs/"
    assert page_path(prefix, prefix) == "index.html"
    assert page_path(f"{prefix}guide/setup/", prefix) == "guide/setup/index.html"
    assert page_path(f"{prefix}guide/setup", prefix) == "guide/setup.html"
    assert page_path(f"{prefix}guide/setup.html", prefix) == "guide/setup.html"
    assert url_style_of([f"{prefix}a.html", f"{prefix}b/c.html", prefix], prefix) == "html"
    assert url_style_of([f"{prefix}a/", f"{prefix}b/c/", prefix], prefix) == "directory"
    assert url_style_of([f"{prefix}a", f"{prefix}b/c"], prefix) == "none"
    links, redirect = links_of(b'<meta http-equiv="Refresh" content="0; URL=intro/"><a href="../x#y">x</a>', f"{prefix}sub/")
    assert redirect and links == [f"{prefix}sub/intro/", f"{prefix}x"]
