"""The web widget in a real browser (Debian's Chromium) against the served gateway.

Real Ray Serve, PostgreSQL and API keys; the LLMs are the test server. A second small
HTTP server plays a docs site of another origin that embeds `/widget.js`. One test feeds
the page a written event stream instead (Playwright's routing), to check the widget's
Markdown, snippets and citation marks on an answer the test LLMs don't write.
`DOCENT_UPDATE_SCREENSHOTS=1` also writes the screenshot of `/` to docs/images/widget.png.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import asyncpg
import httpx
import pytest
from playwright.async_api import expect

from services.gateway.keys import create_key, revoke_key
from tests.conftest import ROOT, require
from tests.gateway_fixtures import BASE_URL, ServedGateway, answering_llms, free_port, serve_docent

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]
SCREENSHOT = ROOT / "docs" / "images" / "widget.png"
VIEWPORT = {"width": 900, "height": 760}
ANSWER_WITHIN_MS = 20_000
QUESTION = "How many times is a failed job retried, and how long between attempts?"
RETRIES_PAGE = f"{BASE_URL}guide/configuration.html"
ECHO_ANSWER_START = "Ray Serve scales deployments [1]."  # what the test server's `echo` LLM says
UNSUPPORTED = "the cited source does not seem to say this"  # what an unsupported citation mark's tooltip says
# No index calibrated: the gateway abstains when the best similarity is under 0.35, as for this.
OFF_TOPIC_QUESTION = "What does the enterprise plan cost?"
NOT_COVERED = "The documentation doesn't seem to cover this."
RATE_LIMIT = 20  # questions per key and minute: the rate-limit test reaches it, no other test does
CHUNKING = {"chunk_size": 200, "chunk_overlap": 20}
# An index of one page whose title is markup, which the widget must show as text. Nothing
# asks it before the test that does: the gateway first says it is loading (503).
MARKUP_INDEX = f"widget-markup-{uuid.uuid4().hex[:8]}"
MARKUP_TITLE = "<img src=x onerror=window.__docentInjected=1>"
MARKUP_DOC_TEXT = "The quasar-lantern setting makes Orbit glow while a job runs. Set quasar-lantern to on or off."
MARKUP_QUESTION = "What does the quasar-lantern setting do?"
TOKENS_SEEN = 5  # words of the slow LLM's answer on the page before the test looks again
LOADED_WITHIN_S = 30


@dataclass
class DocsSite:
    """Another origin's pages embedding the widget: `allowed` is in the gateway's CORS origins, `foreign` not."""

    port: int
    pages: dict[str, str] = field(default_factory=dict)

    @property
    def allowed(self) -> str:
        return f"http://localhost:{self.port}"

    @property
    def foreign(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _docs_site_handler(site: DocsSite) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            page = site.pages.get(self.path.split("?")[0])
            body = (page or "not found").encode()
            self.send_response(200 if page else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    return Handler


@pytest.fixture(scope="module")
def docs_site() -> Iterator[DocsSite]:
    site = DocsSite(free_port())
    server = ThreadingHTTPServer(("127.0.0.1", site.port), _docs_site_handler(site))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield site
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def gateway(ray_local, llm_server, docs_site, tmp_path_factory) -> Iterator[ServedGateway]:
    """Auth on, the docs site allowed by CORS, a rate limit; beside the default index, MARKUP_INDEX."""
    from docent.settings import Settings
    from ingest.pipeline import run_ingest

    markup_docs = tmp_path_factory.mktemp("markup-docs")
    (markup_docs / f"{MARKUP_TITLE}.txt").write_text(MARKUP_DOC_TEXT)
    run_ingest(markup_docs, Settings(index=MARKUP_INDEX, chunking=CHUNKING), base_url=f"{BASE_URL}markup/")
    with serve_docent(
        tmp_path_factory.mktemp("widget"),
        chunking=CHUNKING,
        auth_enabled=True,
        generation={"llms": answering_llms(llm_server.base_url)},
        gateway={"cors_origins": [docs_site.allowed], "rate_limit": {"requests": RATE_LIMIT, "window_s": 60}},
    ) as served:
        yield served


@pytest.fixture
async def db(database_url) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    yield conn
    await conn.close()


@dataclass
class Key:
    name: str
    secret: str


@pytest.fixture
async def key(gateway, db) -> Key:
    """A key of the widget's scopes, one per test: each test has the rate limit to itself."""
    name = f"widget-{uuid.uuid4().hex[:8]}"
    return Key(name, await create_key(db, name, ["query", "feedback"]))


@pytest.fixture(scope="module")
async def browser():
    require(CHROMIUM.is_file(), f"Debian's chromium at {CHROMIUM}")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


@pytest.fixture
async def page(browser):
    context = await browser.new_context(viewport=VIEWPORT)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    await context.close()
    assert not errors, f"the page raised: {errors}"


def _embedding_page(gateway: ServedGateway, **attributes: str) -> str:
    """A docs page of another site with the widget's script tag; its own styles must not leak into the widget."""
    data = " ".join(f'data-{name.replace("_", "-")}="{value}"' for name, value in attributes.items())
    inline_target = '<div id="ask"></div>' if "target" in attributes else ""
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Orbit docs</title>
<style>body {{ font-family: serif; }} button {{ background: red; }} p {{ display: none; }}</style></head>
<body><h1>Orbit documentation</h1>{inline_target}
<script src="{gateway.url}/widget.js" {data} defer></script></body></html>"""


async def _ask(page, question: str) -> None:
    box = page.get_by_label("Ask a question about the docs")
    await box.fill(question)
    await box.press("Enter")  # the keyboard submits


async def _feedback_of(db: asyncpg.Connection, key: Key) -> list[tuple[str, str, str]]:
    """(question, answer, rating) of every feedback given with the key."""
    rows = await db.fetch(
        "SELECT a.question, a.answer, f.rating FROM feedback f JOIN answers a ON a.id = f.answer_id "
        "WHERE f.api_key = $1 ORDER BY f.id", key.name,
    )
    return [(r["question"], r["answer"], r["rating"]) for r in rows]


async def test_the_page_streams_an_answer_with_sources_and_stores_a_thumbs_down(gateway, key, page, db, tmp_path):
    response = await page.goto(f"{gateway.url}/#key={key.secret}")
    assert response.status == 200 and response.headers["content-type"].startswith("text/html")
    assert "#key" not in page.url  # taken out of the address bar once the widget has it

    await _ask(page, QUESTION)
    await page.get_by_text("Answered by").wait_for(timeout=ANSWER_WITHIN_MS)

    answer = page.locator(".docent-answer")
    assert (await answer.get_attribute("aria-live")) == "polite" and (await answer.get_attribute("aria-busy")) == "false"
    answer_text = await answer.text_content()
    assert answer_text.startswith(ECHO_ANSWER_START)
    assert "docent-abstained" not in await answer.get_attribute("class")
    assert await page.locator(".docent-notice").is_hidden()

    # The cited source first, with the passage of it the answer was checked against; the others folded away.
    sources = page.get_by_role("region", name="Sources")
    cited = sources.locator(".docent-cited > li")
    assert await cited.count() == 1 and (await cited.get_attribute("value")) == "1"
    first_source = await cited.get_by_role("link").get_attribute("href")
    assert first_source.startswith(RETRIES_PAGE)
    assert (await cited.get_by_role("link").text_content()).endswith("Retries and backoff")
    snippet = await cited.locator(".docent-snippet").text_content()
    assert "retried" in snippet and len(snippet) <= 201
    more = sources.locator("details.docent-more")
    folded = more.locator("li")
    assert await folded.count() >= 1 and (await more.locator("summary").text_content()) == f"{await folded.count()} more sources"
    assert not await more.evaluate("d => d.open") and await folded.first.is_hidden()
    assert "1" not in [await item.get_attribute("value") for item in await folded.all()]
    await more.locator("summary").click()
    assert await folded.first.is_visible()
    await more.locator("summary").click()  # folded again, as the screenshot shows it

    # [1] links to the source; echo's claim (about Ray Serve) is not what the retries section says: marked.
    mark = answer.get_by_role("link", name="source 1")
    assert (await mark.get_attribute("href")) == first_source
    assert "docent-unsupported" in await mark.get_attribute("class") and (await mark.get_attribute("title")) == UNSUPPORTED
    assert (await page.locator(".docent-llm").text_content()) == "Answered by echo"

    await page.get_by_role("button", name="Not helpful").click()
    await page.get_by_text("Thanks for your feedback!").wait_for()
    assert (await page.get_by_role("button", name="Not helpful").get_attribute("aria-pressed")) == "true"
    assert await _feedback_of(db, key) == [(QUESTION, answer_text, "down")]

    await page.screenshot(path=tmp_path / "widget.png")
    if os.environ.get("DOCENT_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tmp_path / "widget.png", SCREENSHOT)


async def test_a_question_the_docs_do_not_cover_looks_different_and_lists_the_nearest_pages(gateway, key, page, db):
    await page.goto(f"{gateway.url}/#key={key.secret}")
    await _ask(page, OFF_TOPIC_QUESTION)
    notice = page.locator(".docent-notice")
    await notice.wait_for(timeout=ANSWER_WITHIN_MS)
    assert (await notice.text_content()) == "Not in the docs"

    answer = page.locator(".docent-answer")
    assert "docent-abstained" in await answer.get_attribute("class")
    assert (await answer.locator("p").first.text_content()) == NOT_COVERED
    nearest = answer.locator("li").get_by_role("link")
    assert 1 <= await nearest.count() <= 3
    for link in await nearest.all():
        href = await link.get_attribute("href")
        assert href.startswith(BASE_URL) and "#" not in href  # pages, not sections
    assert await page.get_by_role("region", name="Sources").count() == 0  # hidden: nothing was cited
    assert (await page.locator(".docent-llm").text_content()) == "Not answered: no language model was asked"

    await page.get_by_role("button", name="Helpful", exact=True).click()  # still rated like any answer
    await page.get_by_text("Thanks for your feedback!").wait_for()
    assert [(question, rating) for question, _, rating in await _feedback_of(db, key)] == [(OFF_TOPIC_QUESTION, "up")]


# An answer as an LLM could write it: Markdown, markup that must stay text, a link that must not be one,
# and two claims of source 1 its checks support, one of source 2 they don't.
MARKDOWN_ANSWER = (
    "Set **max_retries** in `orbit.yaml` [1]:\n\n"
    "```yaml\nmax_retries: 5  # <b>not bold</b>\n```\n\n"
    "- Waits `backoff_seconds * 2**attempt` between attempts [1].\n"
    "- Ray Serve scales deployments [2].\n\n"
    "See [the guide](https://orbit.example/docs/guide/configuration.html), not [this](javascript:alert(1)).\n"
    "<img src=x onerror=window.__docentInjected=1> [7]"
)
MARKDOWN_CITATIONS = [
    {"sentence": "Set **max_retries** in `orbit.yaml`", "sources": [1], "supported": True, "score": 0.9},
    {"sentence": "Waits `backoff_seconds * 2**attempt` between attempts", "sources": [1], "supported": True, "score": 0.8},
    {"sentence": "Ray Serve scales deployments", "sources": [2], "supported": False, "score": 0.2},
]
LONG_SNIPPET = "A failed job is retried up to max_retries times (default 3), waiting backoff_seconds * 2**attempt " * 4


def _written_stream(answer: str, citations: list[dict]) -> str:
    """/stream's events for `answer` (word by word) over three sources, 1 and 2 of them cited."""
    sources = [
        {"number": n, "source": f"{BASE_URL}guide/page-{n}.html#s", "title": f"Page {n} > Section {n}", "text": "…",
         "score": 1 / n, "similarity": 0.6, "cited": False, "snippet": ""}
        for n in (1, 2, 3)
    ]
    done = {
        "answer_id": "written", "llm": "echo", "route": {"llm": "echo", "reason": "test"}, "usage": {}, "cost": 0.0,
        "fallbacks": [], "timings_ms": {}, "cached": False, "abstained": False, "citations": citations,
        "sources": [{"number": 1, "cited": True, "snippet": LONG_SNIPPET},
                    {"number": 2, "cited": True, "snippet": "Deployments scale."},
                    {"number": 3, "cited": False, "snippet": ""}],
    }
    events = [("sources", {"answer_id": "written", "sources": sources})]
    events += [("token", {"text": word}) for word in re.findall(r"\S+\s*", answer)]
    events.append(("done", done))
    return "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events)


async def test_the_answer_s_markdown_renders_safely_with_its_citations_marked(gateway, page):
    async def written(route):
        await route.fulfill(status=200, content_type="text/event-stream", body=_written_stream(MARKDOWN_ANSWER, MARKDOWN_CITATIONS))

    await page.route("**/stream", written)
    await page.goto(f"{gateway.url}/")
    await _ask(page, "How do I configure retries?")
    await page.get_by_text("Answered by").wait_for(timeout=ANSWER_WITHIN_MS)

    answer = page.locator(".docent-answer")
    assert (await answer.locator("strong").text_content()) == "max_retries"
    assert (await answer.locator("p code").first.text_content()) == "orbit.yaml"
    code = answer.locator("pre > code")
    assert await code.count() == 1 and (await code.text_content()) == "max_retries: 5  # <b>not bold</b>"
    assert (await code.get_attribute("class")) == "language-yaml"
    items = answer.locator("ul > li")
    assert await items.count() == 2
    assert (await items.first.locator("code").text_content()) == "backoff_seconds * 2**attempt"
    guide = answer.get_by_role("link", name="the guide")
    assert (await guide.get_attribute("href")) == f"{BASE_URL}guide/configuration.html"
    assert await answer.locator("a[href^='javascript']").count() == 0
    assert "[this](javascript:alert(1))" in await answer.text_content()
    assert "<img src=x onerror=window.__docentInjected=1> [7]" in await answer.text_content()  # markup, and no source 7
    assert await page.locator(".docent-host").evaluate("h => h.shadowRoot.querySelectorAll('img, b').length") == 0
    assert await page.evaluate("window.__docentInjected") is None

    # The claims of source 1 are supported; the one of source 2 is not, and its mark says so.
    supported = answer.get_by_role("link", name="source 1")
    assert await supported.count() == 2
    assert ["docent-unsupported" in await mark.get_attribute("class") for mark in await supported.all()] == [False, False]
    doubted = answer.locator(".docent-unsupported")
    assert await doubted.count() == 1 and (await doubted.text_content()) == "2"
    assert (await doubted.get_attribute("title")) == UNSUPPORTED
    assert UNSUPPORTED in await doubted.get_attribute("aria-label")

    # Cited sources first, in order, each with its snippet (a long one shortened); the rest folded.
    cited = page.locator(".docent-cited > li")
    assert [await item.get_attribute("value") for item in await cited.all()] == ["1", "2"]
    long_snippet = await cited.first.locator(".docent-snippet").text_content()
    assert long_snippet.endswith("…") and len(long_snippet) <= 201 and LONG_SNIPPET.startswith(long_snippet[:-1])
    assert (await cited.nth(1).locator(".docent-snippet").text_content()) == "Deployments scale."
    assert (await page.locator(".docent-more summary").text_content()) == "1 more source"
    assert await page.locator(".docent-more li").get_attribute("value") == "3"


async def test_a_docs_site_of_another_origin_embeds_the_floating_widget(gateway, key, docs_site, page, db):
    docs_site.pages["/embedded.html"] = _embedding_page(gateway, api_key=key.secret)
    await page.goto(f"{docs_site.allowed}/embedded.html")

    toggle = page.get_by_role("button", name="Ask the docs")
    await toggle.click()
    assert (await toggle.get_attribute("aria-expanded")) == "true"
    assert await page.get_by_label("Ask a question about the docs").evaluate("e => e.getRootNode().activeElement === e")
    await _ask(page, QUESTION)
    dialog = page.get_by_role("dialog", name="Ask the docs")
    await dialog.get_by_text("Answered by").wait_for(timeout=ANSWER_WITHIN_MS)
    assert (await dialog.locator(".docent-answer").text_content()).startswith(ECHO_ANSWER_START)
    # The host page hides every <p> and paints buttons red: neither reaches into the widget.
    assert await dialog.locator(".docent-llm").is_visible()
    ask = dialog.get_by_role("button", name="Ask", exact=True)
    assert await ask.evaluate("e => getComputedStyle(e).backgroundColor") != "rgb(255, 0, 0)"

    await dialog.get_by_role("button", name="Helpful", exact=True).click()
    await dialog.get_by_text("Thanks for your feedback!").wait_for()
    assert [rating for _, _, rating in await _feedback_of(db, key)] == ["up"]

    await page.keyboard.press("Escape")
    assert await dialog.is_hidden() and (await toggle.get_attribute("aria-expanded")) == "false"


async def test_tokens_show_up_while_the_answer_is_still_streaming(gateway, key, docs_site, page):
    docs_site.pages["/slow.html"] = _embedding_page(gateway, api_key=key.secret, target="#ask", llm="dawdler")
    await page.goto(f"{docs_site.allowed}/slow.html")
    await _ask(page, QUESTION)

    answer = page.locator(".docent-answer")
    await expect(answer).to_contain_text(f"w{TOKENS_SEEN} ", timeout=ANSWER_WITHIN_MS)
    early = await answer.text_content()
    assert (await answer.get_attribute("aria-busy")) == "true"
    last_word = int(re.findall(r"w(\d+) ", early)[-1])
    await expect(answer).to_contain_text(f"w{last_word + 2} ", timeout=ANSWER_WITHIN_MS)  # more words, same answer
    assert (await answer.text_content()).startswith(early)
    assert await page.get_by_text("Answered by").count() == 0  # still streaming: the slow LLM has 200 words


async def test_an_index_still_loading_says_when_to_try_again_and_its_titles_stay_text(gateway, key, docs_site, page):
    docs_site.pages["/markup.html"] = _embedding_page(gateway, api_key=key.secret, target="#ask", index=MARKUP_INDEX)
    await page.goto(f"{docs_site.allowed}/markup.html")
    await _ask(page, MARKUP_QUESTION)
    alert = page.get_by_role("alert")
    await alert.get_by_text("docent is not ready").wait_for(timeout=ANSWER_WITHIN_MS)
    assert "is loading" in await alert.text_content() and "Try again in" in await alert.text_content()

    answered = page.get_by_text("Answered by")
    deadline = time.monotonic() + LOADED_WITHIN_S
    while not await answered.is_visible():
        assert time.monotonic() < deadline, f"{MARKUP_INDEX} not loaded after {LOADED_WITHIN_S} s"
        await asyncio.sleep(0.5)
        await page.get_by_role("button", name="Ask", exact=True).click()  # as the reader would, again
        await answered.or_(alert).first.wait_for(timeout=ANSWER_WITHIN_MS)

    source = page.get_by_role("region", name="Sources").get_by_role("link", name=MARKUP_TITLE, exact=True)
    assert (await source.get_attribute("href")).startswith(f"{BASE_URL}markup/")
    assert await page.locator(".docent-host").evaluate("h => h.shadowRoot.querySelectorAll('img').length") == 0
    assert await page.evaluate("window.__docentInjected") is None


async def test_without_a_key_the_page_says_how_to_give_one(gateway, page):
    await page.goto(f"{gateway.url}/")
    await _ask(page, QUESTION)
    alert = page.get_by_role("alert")
    await alert.get_by_text("needs a valid API key").wait_for(timeout=ANSWER_WITHIN_MS)
    assert "#key=YOUR_KEY" in await alert.text_content()


async def test_a_revoked_key_is_refused_with_a_readable_message(gateway, key, db, page):
    await revoke_key(db, key.name)
    await page.goto(f"{gateway.url}/#key={key.secret}")
    await _ask(page, QUESTION)
    await page.get_by_role("alert").get_by_text("revoked").wait_for(timeout=ANSWER_WITHIN_MS)


async def test_too_many_questions_say_when_to_try_again(gateway, key, page):
    async with httpx.AsyncClient(base_url=gateway.url, headers={"Authorization": f"Bearer {key.secret}"}) as http:
        for _ in range(RATE_LIMIT):  # the key's budget, spent on one question (answered from the cache after the first)
            response = await http.post("/query", json={"query": "How do I install Orbit?"})
            assert response.status_code == 200, response.text
    await page.goto(f"{gateway.url}/#key={key.secret}")
    await _ask(page, "How do I install Orbit?")
    alert = page.get_by_role("alert")
    await alert.get_by_text("Too many questions").wait_for(timeout=ANSWER_WITHIN_MS)
    assert "Try again in" in await alert.text_content()


async def test_a_site_missing_from_the_cors_origins_gets_a_message_not_an_answer(gateway, key, docs_site, page):
    docs_site.pages["/foreign.html"] = _embedding_page(gateway, api_key=key.secret, target="#ask")
    await page.goto(f"{docs_site.foreign}/foreign.html")
    await _ask(page, QUESTION)
    alert = page.get_by_role("alert")
    await alert.get_by_text("Could not reach docent").wait_for(timeout=ANSWER_WITHIN_MS)
    assert "CORS" in await alert.text_content()
