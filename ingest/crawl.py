"""Docs sites on the web: `docent ingest https://docs.example.com/` crawls the site into a local mirror, then ingests it.

Which pages: those the site's sitemap lists under the URL (sitemap indexes followed, as
robots.txt and `<prefix>/sitemap.xml`, `/sitemap.xml` name them); without a sitemap, the
links followed from the URL, page by page, never leaving its prefix. robots.txt is obeyed
(Disallow for our user agent, Crawl-delay). Fetching is a Ray Data job per round of URLs
(one round for a sitemap, one per link depth otherwise), like the object-storage sync:
`crawl.concurrency` tasks, paced to `crawl.requests_per_second` all together, each
request retried on connection errors, 429 and 5xx (honouring Retry-After).

Incremental: every page's ETag and Last-Modified are kept beside the mirror and sent
back (If-None-Match, If-Modified-Since); a 304 costs no download, and a page that comes
back unchanged keeps its file, so the ingest's content hash skips it either way. Pages
gone (404/410, or no longer listed or linked) leave the mirror, so `--prune` removes them
from the index. A page maps to a file of the mirror as its URL maps under the prefix
(`guide/setup/` → `guide/setup/index.html`), and the site's URL style (html, directory,
none) is read off its URLs, so every source links back to the page it came from, with the
page's own heading ids as anchors (the HTML loader keeps the main content and drops
navigation, headers and footers).
"""

from __future__ import annotations

import gzip
import json
import random
import time
import urllib.robotparser
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import urldefrag, urljoin, urlsplit
from xml.etree import ElementTree

import numpy as np

from docent.errors import IngestError, SourceError
from docent.settings import CrawlSettings, Settings
from docent.types import UrlStyle
from docent.uris import write_copy
from ingest.progress import IngestProgress
from ingest.remote import remove_gone

MANIFEST = "crawl.json"
_HTML_TYPES = ("text/html", "application/xhtml+xml")
_GONE = (404, 410)
_RETRIED = (429, 500, 502, 503, 504)
_SITEMAP_NS = "{http://www.sitemaps.org/schemas/sitemap/0.9}"
_MAX_SITEMAPS = 50  # sitemap files read at most (an index of indexes cannot run away)
_NOT_PAGES = {".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp", ".ico", ".css", ".js", ".json", ".xml", ".zip",
              ".gz", ".tar", ".whl", ".pdf", ".txt", ".ipynb", ".py", ".woff", ".woff2", ".ttf", ".mp4"}


def is_web(source: str | Path) -> bool:
    return str(source).startswith(("http://", "https://"))


@dataclass
class CrawlReport:
    root: Path  # the mirror: ingested like a folder
    base_url: str  # the prefix: every page's URL is under it
    url_style: UrlStyle
    via_sitemap: bool
    pages: int = 0  # pages of the site now in the mirror
    downloaded: int = 0  # new or changed
    unchanged: int = 0  # 304, or the same bytes again
    removed: int = 0  # gone from the site: left the mirror
    disallowed: int = 0  # by robots.txt
    failed: dict[str, str] = field(default_factory=dict)  # url → why (a page that failed keeps its last copy)
    truncated: bool = False  # crawl.max_pages reached: nothing was removed
    seconds: float = 0.0

    @property
    def pages_per_second(self) -> float:
        fetched = self.downloaded + self.unchanged
        return fetched / self.seconds if self.seconds else 0.0


@dataclass
class _Page:
    path: str  # in the mirror
    etag: str | None = None
    last_modified: str | None = None
    links: list[str] = field(default_factory=list)


# ── where things are ────────────────────────────────────────────────────────────────────


def site_prefix(url: str) -> str:
    """The URL's folder: `https://h/docs/` for `https://h/docs/`, `…/docs/index.html` or `…/docs` (a folder page)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SourceError(f"{url!r} is not a web address: give http(s)://HOST/PATH/")
    path = parts.path or "/"
    last = PurePosixPath(path).name
    if not path.endswith("/"):
        path = path[: -len(last)] if "." in last else f"{path}/"
    return f"{parts.scheme}://{parts.netloc}{path}"


def mirror_root(prefix: str, settings: Settings) -> Path:
    parts = urlsplit(prefix)
    folder = parts.netloc.replace(":", "_") + parts.path.rstrip("/")
    return settings.data_dir / "corpora" / "web" / folder


def page_path(url: str, prefix: str) -> str:
    """Where a page under `prefix` lives in the mirror: `a/` → `a/index.html`, `a/b` → `a/b.html`, `a/b.html` as is."""
    relative = url[len(prefix):]
    if not relative or relative.endswith("/"):
        return f"{relative}index.html"
    if PurePosixPath(relative).suffix.lower() in (".html", ".htm"):
        return relative
    return f"{relative}.html"


def url_style_of(urls: list[str], prefix: str) -> UrlStyle:
    """The site's style, by its pages' URLs: most end in `.html`, or in `/`, or in neither."""
    pages = [u[len(prefix):] for u in urls if u[len(prefix):]]
    if not pages:
        return UrlStyle.DIRECTORY
    html = sum(p.endswith((".html", ".htm")) for p in pages)
    folders = sum(p.endswith("/") for p in pages)
    if html >= folders and html >= len(pages) / 2:
        return UrlStyle.HTML
    return UrlStyle.DIRECTORY if folders >= len(pages) - html - folders else UrlStyle.NONE


def _in_scope(url: str, prefix: str) -> bool:
    if not url.startswith(prefix) or "?" in url:
        return False
    return PurePosixPath(urlsplit(url).path).suffix.lower() not in _NOT_PAGES


# ── the crawl ──────────────────────────────────────────────────────────────────────────


def crawl(url: str, settings: Settings, progress: IngestProgress | None = None) -> CrawlReport:
    """Bring the local mirror of the site under `url` in step with it. Starts Ray: call from the main thread."""
    import httpx

    started = time.perf_counter()
    options = settings.crawl
    prefix = site_prefix(url)
    root = mirror_root(prefix, settings)
    known = _load_manifest(root)
    with httpx.Client(headers={"User-Agent": options.user_agent}, timeout=options.timeout_s,
                      follow_redirects=True) as client:
        robots = _robots(client, prefix, options)
        listed = _sitemap_urls(client, prefix, robots, options)
    delay = robots.crawl_delay(options.user_agent) if robots else None
    rate = min(options.requests_per_second, 1 / float(delay)) if delay else options.requests_per_second
    report = CrawlReport(root, prefix, UrlStyle.DIRECTORY, via_sitemap=bool(listed))
    allowed = _robots_filter(robots, options, report)
    pages: dict[str, _Page] = {}
    frontier = allowed(sorted(listed) if listed else [prefix])
    seen = set(frontier)
    if progress is not None:
        progress.stage("crawl", len(frontier) if listed else None)
    while frontier:
        room = options.max_pages - len(pages)
        if len(frontier) > room:
            frontier, report.truncated = frontier[:room], True
        links: set[str] = set()
        for result in _fetch_round(frontier, known, root, settings, rate):
            seen.add(result["final_url"])
            page = _take(result, prefix, root, known, report)
            if page is not None:
                pages[page[0]] = page[1]
                links.update(page[1].links)
            elif result["redirect"]:  # a meta-refresh page: followed, not kept
                links.update(json.loads(result["links"]))
            if progress is not None:
                progress.advance("crawl")
        if listed or len(pages) >= options.max_pages:
            report.truncated |= len(pages) >= options.max_pages and bool(links - seen)
            break
        frontier = allowed(sorted(u for u in links if u not in seen and _in_scope(u, prefix)))
        seen.update(frontier)
    if not pages and not known:
        raise SourceError(f"no pages read under {prefix}: {_first_failure(report)}")
    kept = {**{u: p for u, p in known.items() if u in report.failed}, **pages}
    if not report.truncated:
        report.removed = remove_gone(root, {p.path for p in kept.values()}) if root.is_dir() else 0
    else:
        kept = {**known, **kept}
    _save_manifest(root, kept)
    report.pages = len(kept)
    report.url_style = url_style_of(sorted(kept), prefix)
    report.seconds = time.perf_counter() - started
    return report


def _take(result: dict, prefix: str, root: Path, known: dict[str, _Page], report: CrawlReport):
    """(url, page) for a page the site has, under the URL it ended at; None for one gone, failed or not a page."""
    url, status = result["final_url"], result["status"]
    if result["error"]:
        report.failed[result["url"]] = result["error"]
        return None
    if status in _GONE or not _in_scope(url, prefix):
        return None  # gone, or moved out of the prefix: not ours
    if status == 304 and url in known:
        report.unchanged += 1
        return url, known[url]
    if status != 200 or not result["content_type"].startswith(_HTML_TYPES):
        if status != 200:
            report.failed[result["url"]] = f"HTTP {status}"
        return None
    if result["redirect"]:
        return None
    page = _Page(page_path(url, prefix), result["etag"] or None, result["last_modified"] or None,
                 json.loads(result["links"]))
    target = root / page.path
    body = bytes(result["body"])
    if target.is_file() and target.read_bytes() == body:
        report.unchanged += 1
    else:
        write_copy(target, body, time.time())
        report.downloaded += 1
    return url, page


def _first_failure(report: CrawlReport) -> str:
    if report.failed:
        url, why = next(iter(report.failed.items()))
        return f"{url}: {why}"
    if report.disallowed:
        return "robots.txt disallows them"
    return "the address answers with no HTML page"


# ── robots.txt and sitemaps ─────────────────────────────────────────────────────────────


def _robots(client, prefix: str, options: CrawlSettings) -> urllib.robotparser.RobotFileParser | None:
    if not options.respect_robots:
        return None
    parts = urlsplit(prefix)
    robots = urllib.robotparser.RobotFileParser(f"{parts.scheme}://{parts.netloc}/robots.txt")
    try:
        response = client.get(robots.url)
    except Exception as exc:  # noqa: BLE001 - any failure to connect is the site's address being wrong
        raise SourceError(f"cannot reach {parts.scheme}://{parts.netloc}/: {_reason(exc)}") from None
    # As browsers and search engines read it: no robots.txt (4xx) allows everything.
    robots.parse(response.text.splitlines() if response.status_code == 200 else [])
    return robots


def _robots_filter(robots, options: CrawlSettings, report: CrawlReport):
    def allowed(urls: list[str]) -> list[str]:
        if robots is None:
            return urls
        kept = [u for u in urls if robots.can_fetch(options.user_agent, u)]
        report.disallowed += len(urls) - len(kept)
        return kept

    return allowed


def _sitemap_urls(client, prefix: str, robots, options: CrawlSettings) -> set[str]:
    """Page URLs under the prefix that the site's sitemaps list (none: empty)."""
    parts = urlsplit(prefix)
    candidates = list((robots.site_maps() or []) if robots else [])
    candidates += [urljoin(prefix, "sitemap.xml"), f"{parts.scheme}://{parts.netloc}/sitemap.xml"]
    pending, read, urls = list(dict.fromkeys(candidates)), set(), set()
    while pending and len(read) < _MAX_SITEMAPS:
        sitemap = pending.pop(0)
        if sitemap in read:
            continue
        read.add(sitemap)
        tree = _sitemap_tree(client, sitemap)
        if tree is None:
            continue
        if tree.tag == f"{_SITEMAP_NS}sitemapindex":
            pending += [loc.text.strip() for loc in tree.iter(f"{_SITEMAP_NS}loc") if loc.text]
        else:
            found = [urldefrag(loc.text.strip())[0] for loc in tree.iter(f"{_SITEMAP_NS}loc") if loc.text]
            urls.update(u for u in found if _in_scope(u, prefix))
        if urls and sitemap in candidates[-2:]:
            break  # the prefix's own sitemap answered: the site-wide one adds nothing under it
    return urls


def _sitemap_tree(client, url: str):
    try:
        response = client.get(url)
    except Exception:  # noqa: BLE001 - a sitemap that cannot be read is one the site does not have
        return None
    if response.status_code != 200:
        return None
    content = response.content
    if content[:2] == b"\x1f\x8b":
        content = gzip.decompress(content)
    try:
        return ElementTree.fromstring(content)
    except ElementTree.ParseError:
        return None


# ── fetching: a Ray Data job per round ──────────────────────────────────────────────────


def _fetch_round(urls: list[str], known: dict[str, _Page], root: Path, settings: Settings, rate: float) -> Iterator[dict]:
    import ray
    from ray.exceptions import RayError

    from docent.ray_runtime import ensure_ray

    ensure_ray(settings)
    options = settings.crawl
    tasks = max(1, min(options.concurrency, len(urls)))
    # Validators only for pages whose copy is still there: a 304 must leave a file to ingest.
    cached = {u: known[u] for u in urls if u in known and (root / known[u].path).is_file()}
    rows = [{"url": u, "etag": (cached[u].etag if u in cached else "") or "",
             "last_modified": (cached[u].last_modified if u in cached else "") or ""} for u in urls]
    fetched = ray.data.from_items(rows, override_num_blocks=tasks).map_batches(
        _fetch_batch, fn_kwargs={"options": options.model_dump(), "interval": tasks / rate},
        batch_size=None, batch_format="numpy", concurrency=tasks, num_cpus=0.25,
    )
    try:
        for batch in fetched.iter_batches(batch_size=None, batch_format="numpy"):
            columns = list(batch)
            for i in range(len(batch["url"])):
                yield {c: (batch[c][i].item() if isinstance(batch[c][i], np.generic) else batch[c][i]) for c in columns}
    except RayError as exc:
        innermost = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
        raise IngestError(f"crawling failed in Ray: {innermost[-1]}") from exc


def _fetch_batch(batch: dict[str, np.ndarray], options: dict, interval: float) -> dict[str, np.ndarray]:
    """Ray Data task: GET each URL in turn, `interval` seconds apart (all tasks together keep to the rate)."""
    import httpx

    settings = CrawlSettings(**options)
    out: dict[str, list] = {k: [] for k in ("url", "final_url", "status", "body", "etag", "last_modified",
                                            "content_type", "links", "redirect", "error")}
    with httpx.Client(headers={"User-Agent": settings.user_agent}, timeout=settings.timeout_s,
                      follow_redirects=True) as client:
        last = 0.0
        for url, etag, modified in zip(batch["url"], batch["etag"], batch["last_modified"], strict=True):
            headers = {k: v for k, v in (("If-None-Match", etag), ("If-Modified-Since", modified)) if v}
            response, error, last = _get(client, str(url), headers, settings, interval, last)
            body = response.content if response is not None and response.status_code == 200 else b""
            content_type = response.headers.get("content-type", "") if response is not None else ""
            html = response is not None and response.status_code == 200 and content_type.startswith(_HTML_TYPES)
            out["url"].append(str(url))
            out["final_url"].append(str(response.url) if response is not None else str(url))
            out["status"].append(response.status_code if response is not None else 0)
            out["body"].append(body)
            out["etag"].append(response.headers.get("etag", "") if response is not None else "")
            out["last_modified"].append(response.headers.get("last-modified", "") if response is not None else "")
            out["content_type"].append(content_type)
            links, redirect = links_of(body, str(response.url)) if html else ([], False)
            out["links"].append(json.dumps(links))
            out["redirect"].append(redirect)
            out["error"].append(error)
    return {k: np.array(v, dtype=object) for k, v in out.items()}


def _get(client, url: str, headers: dict, options: CrawlSettings, interval: float, last: float):
    """(response or None, error text or "", time of the last request): retried as the settings say."""
    import httpx

    error = ""
    for attempt in range(options.retries + 1):
        wait = last + interval - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        last = time.monotonic()
        try:
            response = client.get(url, headers=headers)
        except httpx.TransportError as exc:
            error = _reason(exc)
        else:
            if response.status_code not in _RETRIED:
                return response, "", last
            error = f"HTTP {response.status_code}"
            retry_after = _retry_after(response)
            if retry_after is not None:
                if retry_after > options.max_retry_after_s:
                    return None, f"{error} with Retry-After {retry_after:.0f} s (over crawl.max_retry_after_s)", last
                time.sleep(retry_after)
                continue
        if attempt < options.retries:
            time.sleep(options.retry_backoff_s * 2**attempt * (1 + random.random() / 4))
    return None, f"{error} after {options.retries + 1} tries", last


def _retry_after(response) -> float | None:
    value = response.headers.get("retry-after", "").strip()
    return float(value) if value.replace(".", "", 1).isdigit() else None


def _reason(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def links_of(body: bytes, url: str) -> tuple[list[str], bool]:
    """(absolute URLs of a page's links, fragments dropped, each once; whether it is a meta-refresh redirect)."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(body, "lxml")
    base = soup.find("base", href=True)
    origin = urljoin(url, base["href"]) if base is not None else url
    hrefs = [a["href"].strip() for a in soup.find_all("a", href=True)]
    refresh = soup.find("meta", attrs={"http-equiv": lambda v: v and v.lower() == "refresh"})
    target = _refresh_target(str(refresh.get("content", ""))) if refresh is not None else None
    if target:
        hrefs.insert(0, target)
    found = (urldefrag(urljoin(origin, href))[0] for href in hrefs)
    return list(dict.fromkeys(u for u in found if u.startswith(("http://", "https://")))), bool(target)


def _refresh_target(content: str) -> str | None:
    """`0; url=intro/` → `intro/`."""
    _, _, rest = content.partition(";")
    key, _, value = rest.strip().partition("=")
    return value.strip().strip("'\"") or None if key.strip().lower() == "url" else None


# ── the mirror ─────────────────────────────────────────────────────────────────────────


def _load_manifest(root: Path) -> dict[str, _Page]:
    path = root.parent / f"{root.name}.{MANIFEST}"
    if not path.is_file():
        return {}
    try:
        return {url: _Page(**page) for url, page in json.loads(path.read_text()).items()}
    except (ValueError, TypeError):
        return {}  # unreadable: everything is fetched again, and the content hashes still skip unchanged pages


def _save_manifest(root: Path, pages: dict[str, _Page]) -> None:
    path = root.parent / f"{root.name}.{MANIFEST}"
    write_copy(path, json.dumps({url: asdict(page) for url, page in sorted(pages.items())}, indent=0).encode(),
               time.time())
