"""The web widget in a real browser (Debian's Chromium) against the served gateway.

Real Ray Serve, PostgreSQL and API keys; the LLMs are the test server. A second small
HTTP server plays a docs site of another origin that embeds `/widget.js`. Some tests feed
the page a written event stream instead (Playwright's routing), to check the widget's
Markdown, snippets, citation marks and layout on answers the test LLMs don't write.
The screenshots in docs/widget.md show real answers: scripts/widget-screenshots.py.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import asyncpg
import httpx
import pytest
from playwright.async_api import expect

from services.gateway.keys import create_key, revoke_key
from tests.conftest import require
from tests.gateway_fixtures import BASE_URL, ServedGateway, answering_llms, free_port, serve_docent

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]
VIEWPORT = {"width": 900, "height": 760}
PHONE = {"width": 390, "height": 844}
ANSWER_WITHIN_MS = 20_000
QUESTION = "How many times is a failed job retried, and how long between attempts?"
ANOTHER_QUESTION = "How do I install Orbit with pip?"
FOLLOW_UP = "And can I change that?"  # leans on QUESTION: the gateway searches for it with the conversation's subject
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
# An index of one page whose title and text are markup, asked a question that is markup too.
INJECTION_INDEX = f"widget-injection-{uuid.uuid4().hex[:8]}"
INJECTION_TITLE = "<svg onload=window.__docentInjected=1>"
INJECTED_SCRIPT = "<script>window.__docentInjected=1</script>"
INJECTED_IMAGE = "<img src=x onerror=window.__docentInjected=1>"
INJECTION_DOC_TEXT = f"The nebula-switch setting prints {INJECTED_SCRIPT} and {INJECTED_IMAGE} as plain text in the Orbit log."
INJECTION_QUESTION = f"What does the nebula-switch setting print? {INJECTED_SCRIPT} {INJECTED_IMAGE}"
INJECTION_FOLLOW_UP = "And where does it print that?"  # leans on INJECTION_QUESTION: searched for with it
TOKENS_SEEN = 5  # words of the slow LLM's answer on the page before the test looks again
LOADED_WITHIN_S = 30
# The floating panel on a short phone screen: the slow LLM's answer outgrows its conversation.
SHORT_PHONE = {"width": 390, "height": 420}
FOLLOWING_SLACK_PX = 32  # widget.js: this close to the bottom, the conversation follows a streaming answer


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
    """Auth on, the docs site allowed by CORS, a rate limit; beside the default index, MARKUP_INDEX and INJECTION_INDEX."""
    from docent.settings import Settings
    from ingest.pipeline import run_ingest

    markup_docs = tmp_path_factory.mktemp("markup-docs")
    (markup_docs / f"{MARKUP_TITLE}.txt").write_text(MARKUP_DOC_TEXT)
    run_ingest(markup_docs, Settings(index=MARKUP_INDEX, chunking=CHUNKING), base_url=f"{BASE_URL}markup/")
    injection_docs = tmp_path_factory.mktemp("injection-docs")
    (injection_docs / f"{INJECTION_TITLE}.txt").write_text(INJECTION_DOC_TEXT)
    run_ingest(injection_docs, Settings(index=INJECTION_INDEX, chunking=CHUNKING), base_url=f"{BASE_URL}injection/")
    with serve_docent(
        tmp_path_factory.mktemp("widget"),
        chunking=CHUNKING,
        auth_enabled=True,
        generation={"llms": answering_llms(llm_server.base_url)},
        gateway={"cors_origins": [docs_site.allowed], "rate_limit": {"requests": RATE_LIMIT, "window_s": 60}},
        # Follow-ups made to stand alone without an LLM (the test LLMs can't condense): a deterministic standalone question.
        conversation={"condenser": "offline"},
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


@asynccontextmanager
async def _browser_page(browser, **context_options) -> AsyncIterator:
    """A page in a fresh browser context (VIEWPORT unless told); any error the page raises fails the test."""
    context = await browser.new_context(**{"viewport": VIEWPORT, **context_options})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
    finally:
        await context.close()
    assert not errors, f"the page raised: {errors}"


@pytest.fixture
async def page(browser):
    async with _browser_page(browser) as page:
        yield page


def _embedding_page(gateway: ServedGateway, **attributes: str) -> str:
    """A docs page of another site with the widget's script tag; its own styles must not leak into the widget."""
    data = " ".join(f'data-{name.replace("_", "-")}="{value}"' for name, value in attributes.items())
    inline_target = '<div id="ask"></div>' if "target" in attributes else ""
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Orbit docs</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body {{ font-family: serif; }} button {{ background: red; }} p {{ display: none; }}</style></head>
<body><h1>Orbit documentation</h1>{inline_target}
<script src="{gateway.url}/widget.js" {data} defer></script></body></html>"""


async def _ask(page, question: str) -> None:
    box = page.get_by_label("Ask a question about the docs")
    await box.fill(question)
    await box.press("Enter")  # the keyboard submits


def _stream_requests(page) -> list[dict]:
    """The body of every question the page sends (POST /stream), in order, as the page sends them."""
    bodies: list[dict] = []
    page.on("request", lambda request: bodies.append(request.post_data_json)
            if request.method == "POST" and request.url.endswith("/stream") else None)
    return bodies


async def _answered(page, turns: int) -> None:
    """Waits until `turns` answers are complete on the page."""
    await page.locator(".docent-llm").nth(turns - 1).wait_for(timeout=ANSWER_WITHIN_MS)


async def _focused(page) -> str:
    """The name (aria-label, else its label's text or its own) of the element focused in the widget; "" outside it."""
    return await page.evaluate("""() => {
        const active = document.querySelector(".docent-host").shadowRoot.activeElement;
        if (!active) return "";
        const label = active.labels && active.labels[0];
        return (active.getAttribute("aria-label") || (label ? label.textContent : active.textContent)).trim();
    }""")


async def _tab_to(page, name: str, key: str = "Tab", presses: int = 30) -> None:
    """Presses `key` until the widget's element called `name` has the focus."""
    for _ in range(presses):
        await page.keyboard.press(key)
        if await _focused(page) == name:
            return
    raise AssertionError(f"{key} never reached {name!r}")


async def _scrolled_still(log) -> float:
    """The log's scrollTop once a (smooth) scroll has come to rest."""
    position = await log.evaluate("e => e.scrollTop")
    for _ in range(50):
        await asyncio.sleep(0.1)
        now = await log.evaluate("e => e.scrollTop")
        if now == position:
            return now
        position = now
    raise AssertionError("the conversation kept scrolling")


async def _routed_embedding_page(page, gateway: ServedGateway, **attributes: str) -> str:
    """A docs page embedding the widget, served (by Playwright's routing) from the gateway's own origin: no CORS."""
    url = f"{gateway.url}/docs-page-{uuid.uuid4().hex[:6]}.html"

    async def docs_page(route):
        await route.fulfill(status=200, content_type="text/html; charset=utf-8", body=_embedding_page(gateway, **attributes))

    await page.route(url, docs_page)
    return url


async def _conversation_of(db: asyncpg.Connection, key: Key, question: str) -> tuple[str | None, str | None]:
    """(conversation_id, standalone_question) the answer log has for the key's answer to `question`."""
    row = await db.fetchrow(
        "SELECT conversation_id, standalone_question FROM answers WHERE api_key = $1 AND question = $2 "
        "ORDER BY created_at DESC LIMIT 1", key.name, question,
    )
    assert row is not None, f"no answer to {question!r} in the log"
    return row["conversation_id"], row["standalone_question"]


async def _feedback_of(db: asyncpg.Connection, key: Key) -> list[tuple[str, str, str]]:
    """(question, answer, rating) of every feedback given with the key."""
    rows = await db.fetch(
        "SELECT a.question, a.answer, f.rating FROM feedback f JOIN answers a ON a.id = f.answer_id "
        "WHERE f.api_key = $1 ORDER BY f.id", key.name,
    )
    return [(r["question"], r["answer"], r["rating"]) for r in rows]


async def test_the_page_streams_an_answer_with_sources_and_stores_a_thumbs_down(gateway, key, page, db):
    response = await page.goto(f"{gateway.url}/#key={key.secret}")
    assert response.status == 200 and response.headers["content-type"].startswith("text/html")
    assert "#key" not in page.url  # taken out of the address bar once the widget has it

    await _ask(page, QUESTION)
    await _answered(page, 1)

    log = page.get_by_role("log", name="Conversation")
    assert (await log.get_attribute("aria-live")) == "polite" and (await log.get_attribute("aria-busy")) == "false"
    turn = log.locator(".docent-turn")
    assert await turn.count() == 1
    assert (await turn.locator(".docent-question-text").text_content()) == QUESTION
    answer = turn.locator(".docent-answer")
    answer_text = await answer.text_content()
    assert answer_text.startswith(ECHO_ANSWER_START)
    assert "docent-abstained" not in await answer.get_attribute("class")
    assert await turn.locator(".docent-notice").is_hidden()
    assert await turn.locator(".docent-searched").is_hidden()  # a first question is searched for as asked

    # The cited source first, with the passage of it the answer was checked against; the others folded away.
    sources = turn.get_by_role("region", name="Sources")
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

    # [1] links to the source; echo's claim (about Ray Serve) is not what the retries section says: marked.
    mark = answer.get_by_role("link", name="source 1")
    assert (await mark.get_attribute("href")) == first_source
    assert "docent-unsupported" in await mark.get_attribute("class") and (await mark.get_attribute("title")) == UNSUPPORTED
    assert (await turn.locator(".docent-llm").text_content()) == "Answered by echo"

    # The feedback buttons come right under the answer, before its sources.
    feedback = turn.get_by_role("group", name="Was this answer helpful?")
    assert (await feedback.bounding_box())["y"] < (await sources.bounding_box())["y"]
    await feedback.get_by_role("button", name="Not helpful").click()
    await page.get_by_text("Thanks for your feedback!").wait_for()
    assert (await feedback.get_by_role("button", name="Not helpful").get_attribute("aria-pressed")) == "true"
    assert await _feedback_of(db, key) == [(QUESTION, answer_text, "down")]


async def test_a_follow_up_continues_the_conversation_until_a_new_one_is_started(gateway, key, page, db):
    sent = _stream_requests(page)
    await page.goto(f"{gateway.url}/#key={key.secret}")
    new_conversation = page.get_by_role("button", name="New conversation")
    assert await new_conversation.is_hidden()  # nothing to start anew yet

    await _ask(page, QUESTION)
    await _answered(page, 1)
    await _ask(page, FOLLOW_UP)
    await _answered(page, 2)

    # Both turns stay on screen, the newest at the bottom.
    turns = page.locator(".docent-turn")
    assert [await q.text_content() for q in await turns.locator(".docent-question-text").all()] == [QUESTION, FOLLOW_UP]
    for answer in await turns.locator(".docent-answer").all():
        assert (await answer.text_content()).startswith(ECHO_ANSWER_START) and await answer.is_visible()
    assert (await turns.nth(1).bounding_box())["y"] > (await turns.nth(0).bounding_box())["y"]

    # The follow-up carried the first answer's conversation; the gateway searched for it as a question of its own.
    first_conversation, _ = await _conversation_of(db, key, QUESTION)
    assert first_conversation
    assert sent[0] == {"query": QUESTION}
    assert sent[1] == {"query": FOLLOW_UP, "conversation_id": first_conversation}
    follow_up_conversation, standalone = await _conversation_of(db, key, FOLLOW_UP)
    assert follow_up_conversation == first_conversation
    assert standalone and standalone != FOLLOW_UP
    assert (await turns.nth(1).locator(".docent-searched").text_content()) == f"Searched for: {standalone}"
    assert await turns.nth(0).locator(".docent-searched").is_hidden()

    await new_conversation.click()
    assert await turns.count() == 0 and await new_conversation.is_hidden()
    assert await _focused(page) == "Ask a question about the docs"
    await _ask(page, FOLLOW_UP)
    await _answered(page, 1)
    assert sent[2] == {"query": FOLLOW_UP}  # no conversation: a new one
    assert await turns.count() == 1 and await turns.locator(".docent-searched").is_hidden()
    assert (await _conversation_of(db, key, FOLLOW_UP))[0] not in (None, first_conversation)


async def test_a_reload_keeps_the_conversation_and_an_expired_one_starts_anew(gateway, key, page, db):
    sent = _stream_requests(page)
    await page.goto(f"{gateway.url}/#key={key.secret}")
    await _ask(page, QUESTION)
    await _answered(page, 1)
    await page.get_by_role("button", name="Helpful", exact=True).click()
    await page.get_by_text("Thanks for your feedback!").wait_for()
    answer_text = await page.locator(".docent-answer").text_content()

    # A reload shows the turn again, as it was (rated), and the next question continues its conversation.
    await page.reload()
    turn = page.locator(".docent-turn")
    await turn.first.wait_for()
    assert await turn.count() == 1 and (await turn.locator(".docent-answer").text_content()) == answer_text
    assert (await turn.get_by_role("button", name="Helpful", exact=True).get_attribute("aria-pressed")) == "true"
    assert await turn.locator(".docent-cited > li").count() == 1
    await _ask(page, FOLLOW_UP)
    await _answered(page, 2)
    conversation, _ = await _conversation_of(db, key, QUESTION)
    assert sent[1] == {"query": FOLLOW_UP, "conversation_id": conversation}

    # The gateway no longer knows the conversation (here: one it never gave): 404, and the widget asks anew, once.
    await page.evaluate("""() => {
        const key = Object.keys(sessionStorage).find((k) => k.startsWith("docent-conversation"));
        const saved = JSON.parse(sessionStorage.getItem(key));
        sessionStorage.setItem(key, JSON.stringify({...saved, conversation_id: "c_expired"}));
    }""")
    await page.reload()
    await _ask(page, ANOTHER_QUESTION)
    await _answered(page, 3)
    assert sent[2:] == [
        {"query": ANOTHER_QUESTION, "conversation_id": "c_expired"},
        {"query": ANOTHER_QUESTION},
    ]
    last = turn.last
    assert (await last.locator(".docent-note").text_content()).startswith("The conversation had expired")
    assert await last.get_by_role("alert").is_hidden()
    assert (await last.locator(".docent-answer").text_content()).startswith(ECHO_ANSWER_START)
    await _ask(page, FOLLOW_UP)  # continues the new conversation
    await _answered(page, 4)
    new_conversation, _ = await _conversation_of(db, key, ANOTHER_QUESTION)
    assert sent[4] == {"query": FOLLOW_UP, "conversation_id": new_conversation} and new_conversation != conversation


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


async def test_markup_in_the_docs_and_the_question_shows_as_text_and_never_runs(gateway, key, docs_site, browser, db):
    warm_key = await create_key(db, f"widget-warm-{uuid.uuid4().hex[:8]}", ["query"])
    await _wait_until_loaded(gateway, warm_key, INJECTION_INDEX)
    docs_site.pages["/injection.html"] = _embedding_page(
        gateway, api_key=key.secret, target="#ask", index=INJECTION_INDEX, llm="extractive")
    async with _browser_page(browser) as page:
        await page.goto(f"{docs_site.allowed}/injection.html")
        await _ask(page, INJECTION_QUESTION)
        await _answered(page, 1)

        turn = page.locator(".docent-turn")
        assert (await turn.locator(".docent-question-text").text_content()) == INJECTION_QUESTION
        answer = await turn.locator(".docent-answer").text_content()
        assert INJECTED_SCRIPT in answer and INJECTED_IMAGE in answer  # the docs' words, as written
        snippet = await turn.locator(".docent-cited .docent-snippet").text_content()
        assert INJECTED_SCRIPT in snippet
        source = turn.get_by_role("region", name="Sources").get_by_role("link", name=INJECTION_TITLE, exact=True)
        assert (await source.get_attribute("href")).startswith(f"{BASE_URL}injection/")

        # A follow-up: the standalone question searched for carries the first question's markup, as text too.
        await _ask(page, INJECTION_FOLLOW_UP)
        await _answered(page, 2)
        searched = await turn.nth(1).locator(".docent-searched").text_content()
        assert searched.startswith(f"Searched for: {INJECTION_FOLLOW_UP}") and INJECTED_IMAGE in searched

        assert await _injected_elements(page) == []
        assert await page.locator("body script").count() == 1  # only the widget's own tag
        await page.wait_for_timeout(300)  # an image's onerror would have fired by now
        assert await page.evaluate("window.__docentInjected") is None


async def _injected_elements(page) -> list[str]:
    """Elements in the page or the widget's shadow root that markup could have made: scripts, images, handlers."""
    return await page.evaluate("""() => {
        const roots = [document, ...[...document.querySelectorAll(".docent-host")].map((h) => h.shadowRoot)];
        const found = [];
        for (const root of roots) {
            for (const e of root.querySelectorAll("*")) {
                const handler = [...e.attributes].some((a) => a.name.toLowerCase().startsWith("on"));
                const made = ["IMG", "IFRAME", "OBJECT", "EMBED"].includes(e.tagName) || (e.tagName === "SCRIPT" && root !== document)
                    || (e.tagName.toLowerCase() === "svg" && !e.hasAttribute("aria-hidden"));
                if (handler || made) found.push(e.outerHTML.slice(0, 80));
            }
        }
        return found;
    }""")


async def _wait_until_loaded(gateway: ServedGateway, key_secret: str, index: str) -> None:
    """Asks `index` until the gateway has loaded it (503 until then)."""
    deadline = time.monotonic() + LOADED_WITHIN_S
    async with httpx.AsyncClient(base_url=gateway.url, headers={"Authorization": f"Bearer {key_secret}"}, timeout=30) as http:
        while True:
            response = await http.post("/query", json={"query": "loaded?", "index": index, "options": {"llm": "extractive"}})
            if response.status_code == 200:
                return
            assert response.status_code == 503 and time.monotonic() < deadline, response.text
            await asyncio.sleep(1)


# An answer as an LLM could write it: Markdown, markup that must stay text, links that must not be ones,
# and two claims of source 1 its checks support, one of source 2 they don't.
MARKDOWN_CODE = "max_retries: 5  # <b>not bold</b>\nbackoff_seconds: 2"
MARKDOWN_ANSWER = (
    "Set **max_retries** in `orbit.yaml` [1]:\n\n"
    f"```yaml\n{MARKDOWN_CODE}\n```\n\n"
    "- Waits `backoff_seconds * 2**attempt` between attempts [1].\n"
    "- Ray Serve scales deployments [2].\n\n"
    "See [the guide](https://orbit.example/docs/guide/configuration.html), not [this](javascript:alert(1)).\n"
    "Read [the retries page](../guide/retries.html), but [support](mailto:help@orbit.example), "
    "[run me](javascript:window.__docentInjected=1) and [me](data:text/html,hi) are no links.\n"
    "<img src=x onerror=window.__docentInjected=1> [7]"
)
MARKDOWN_CITATIONS = [
    {"sentence": "Set **max_retries** in `orbit.yaml`", "sources": [1], "supported": True, "score": 0.9},
    {"sentence": "Waits `backoff_seconds * 2**attempt` between attempts", "sources": [1], "supported": True, "score": 0.8},
    {"sentence": "Ray Serve scales deployments", "sources": [2], "supported": False, "score": 0.2},
]
LONG_SNIPPET = "A failed job is retried up to max_retries times (default 3), waiting backoff_seconds * 2**attempt " * 4
# An answer longer than a phone's floating panel, for where its feedback buttons end up.
LONG_ANSWER = "\n\n".join(
    f"Step {n}: a failed job is retried up to max_retries times, waiting backoff_seconds * 2**attempt [1]."
    for n in range(1, 25)
)


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


async def _answer_with(page, answer: str, citations: list[dict]) -> None:
    """Every question of the page gets `answer` (an event stream written here, not the gateway's)."""
    async def written(route):
        await route.fulfill(status=200, content_type="text/event-stream", body=_written_stream(answer, citations))

    await page.route("**/stream", written)


async def test_the_answer_s_markdown_renders_safely_with_its_citations_marked(gateway, page):
    await _answer_with(page, MARKDOWN_ANSWER, MARKDOWN_CITATIONS)
    await page.goto(f"{gateway.url}/")
    await _ask(page, "How do I configure retries?")
    await _answered(page, 1)

    answer = page.locator(".docent-answer")
    assert (await answer.locator("strong").text_content()) == "max_retries"
    assert (await answer.locator("p code").first.text_content()) == "orbit.yaml"
    code = answer.locator("pre > code")
    assert await code.count() == 1 and (await code.text_content()) == MARKDOWN_CODE
    assert (await code.get_attribute("class")) == "language-yaml"
    items = answer.locator("ul > li")
    assert await items.count() == 2
    assert (await items.first.locator("code").text_content()) == "backoff_seconds * 2**attempt"

    # Links: http(s) and relative (resolved against the page); any other scheme stays text.
    guide = answer.get_by_role("link", name="the guide")
    assert (await guide.get_attribute("href")) == f"{BASE_URL}guide/configuration.html"
    assert (await guide.get_attribute("target")) == "_blank" and (await guide.get_attribute("rel")) == "noopener noreferrer"
    relative = answer.get_by_role("link", name="the retries page")
    assert (await relative.get_attribute("href")) == f"{gateway.url}/guide/retries.html"
    assert (await relative.get_attribute("rel")) == "noopener noreferrer"
    text = await answer.text_content()
    for kept in ("[support](mailto:help@orbit.example)", "[this](javascript:alert(1))",
                 "[run me](javascript:window.__docentInjected=1)", "[me](data:text/html,hi)"):
        assert kept in text
    assert await answer.locator("a[href^='javascript'], a[href^='data'], a[href^='mailto']").count() == 0
    assert "<img src=x onerror=window.__docentInjected=1> [7]" in text  # markup, and no source 7
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


async def test_on_a_dark_phone_the_page_is_dark_and_nothing_overflows_its_width(gateway, browser):
    async with _browser_page(browser, viewport=PHONE, is_mobile=True, has_touch=True, color_scheme="dark") as page:
        await _answer_with(page, MARKDOWN_ANSWER, MARKDOWN_CITATIONS)
        await page.goto(f"{gateway.url}/")
        await _ask(page, "How do I configure retries?")
        await _answered(page, 1)

        def luminance(css: str) -> float:
            red, green, blue = (int(v) for v in re.findall(r"\d+", css)[:3])
            return 0.2126 * red + 0.7152 * green + 0.0722 * blue

        widget = page.locator(".docent-host")
        text = await widget.evaluate("h => getComputedStyle(h.shadowRoot.querySelector('.docent')).color")
        box = await page.get_by_label("Ask a question about the docs").evaluate("e => getComputedStyle(e).backgroundColor")
        page_background = await page.evaluate("getComputedStyle(document.querySelector('main')).backgroundColor")
        assert luminance(text) > 180 and luminance(box) < 80 and luminance(page_background) < 80, (text, box, page_background)

        # The long code line scrolls inside its block; the page itself is no wider than the phone.
        assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        code = page.locator(".docent-code pre")
        assert (await code.bounding_box())["x"] + (await code.bounding_box())["width"] <= PHONE["width"]
        ask = await page.get_by_role("button", name="Ask", exact=True).bounding_box()
        assert ask["x"] + ask["width"] <= PHONE["width"]


async def test_a_code_block_s_button_copies_it(gateway, browser):
    async with _browser_page(browser, permissions=["clipboard-read", "clipboard-write"]) as page:
        await _answer_with(page, MARKDOWN_ANSWER, MARKDOWN_CITATIONS)
        await page.goto(f"{gateway.url}/")
        await _ask(page, "How do I configure retries?")
        await _answered(page, 1)
        copy = page.locator(".docent-code").get_by_role("button", name="Copy code")
        await copy.click()
        copied = page.locator(".docent-code").get_by_role("button", name="Copied")
        await copied.wait_for()
        assert (await copied.text_content()) == "Copied"
        assert await page.evaluate("navigator.clipboard.readText()") == MARKDOWN_CODE
        await copy.wait_for(timeout=5000)  # back to "Copy" after a moment

    # A page without the Clipboard API (e.g. plain http on another host): the code is copied from a selection,
    # or left selected for the reader to copy; either way the button says which.
    async with _browser_page(browser) as page:
        await page.add_init_script("Object.defineProperty(Navigator.prototype, 'clipboard', {get: () => undefined})")
        await _answer_with(page, MARKDOWN_ANSWER, MARKDOWN_CITATIONS)
        await page.goto(f"{gateway.url}/")
        await _ask(page, "How do I configure retries?")
        await _answered(page, 1)
        assert await page.evaluate("navigator.clipboard") is None
        copy = page.locator(".docent-code button")
        await copy.click()
        await expect(copy).to_have_text(re.compile(r"^(Copied|Selected: press Ctrl\+C)$"))


async def test_the_keyboard_alone_asks_rates_and_closes_the_floating_panel(gateway, key, docs_site, page, db):
    docs_site.pages["/keyboard.html"] = _embedding_page(gateway, api_key=key.secret)
    sent = _stream_requests(page)
    await page.goto(f"{docs_site.allowed}/keyboard.html")

    await _tab_to(page, "Ask the docs")  # the corner button
    await page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Ask the docs")
    await dialog.wait_for()
    assert await _focused(page) == "Ask a question about the docs"
    await _tab_to(page, "Close", key="Shift+Tab")
    await _tab_to(page, "Ask a question about the docs")  # Tab reaches the question box again

    # Shift+Enter is a new line; Enter sends.
    await page.keyboard.type("How many times is a failed job retried?")
    await page.keyboard.press("Shift+Enter")
    await page.keyboard.type("And how long between attempts?")
    assert sent == []
    await page.keyboard.press("Enter")
    await _answered(page, 1)
    assert sent == [{"query": "How many times is a failed job retried?\nAnd how long between attempts?"}]
    box = dialog.get_by_label("Ask a question about the docs")
    assert (await box.input_value()) == ""
    assert await _focused(page) == "Ask a question about the docs"

    # The Ask button, by keyboard: the focus comes back to the question box once the answer is in.
    await page.keyboard.type(QUESTION)
    await _tab_to(page, "Ask")
    await page.keyboard.press("Enter")
    await _answered(page, 2)
    assert await _focused(page) == "Ask a question about the docs"

    # The feedback buttons are on the way back through the answer.
    await _tab_to(page, "Not helpful", key="Shift+Tab")
    await page.keyboard.press("Enter")
    await dialog.get_by_text("Thanks for your feedback!").wait_for()
    assert [rating for _, _, rating in await _feedback_of(db, key)] == ["down"]

    toggle = page.get_by_role("button", name="Ask the docs")
    await page.keyboard.press("Escape")
    assert await dialog.is_hidden() and (await toggle.get_attribute("aria-expanded")) == "false"
    assert await _focused(page) == "Ask the docs"


async def test_a_long_answer_on_a_phone_keeps_its_feedback_buttons_and_the_question_box_in_view(gateway, browser):
    async with _browser_page(browser, viewport=PHONE, is_mobile=True, has_touch=True) as page:
        await _answer_with(page, LONG_ANSWER, [])
        await page.goto(await _routed_embedding_page(page, gateway))
        await page.get_by_role("button", name="Ask the docs").click()
        await _ask(page, "How do I configure retries?")
        await _answered(page, 1)
        await _ask(page, "And the backoff?")
        await _answered(page, 2)

        panel = await page.get_by_role("dialog", name="Ask the docs").bounding_box()
        log = page.get_by_role("log", name="Conversation")
        assert await log.evaluate("e => e.scrollHeight > 2 * e.clientHeight")  # the answers are longer than the panel
        assert panel["x"] >= 0 and panel["x"] + panel["width"] <= PHONE["width"] and panel["y"] >= 0
        assert panel["y"] + panel["height"] <= PHONE["height"]
        in_view = await log.bounding_box()
        latest = page.locator(".docent-turn").last
        for button in ("Helpful", "Not helpful"):
            box = await latest.get_by_role("button", name=button, exact=True).bounding_box()
            assert in_view["y"] <= box["y"] and box["y"] + box["height"] <= in_view["y"] + in_view["height"], button
            assert in_view["x"] <= box["x"] and box["x"] + box["width"] <= in_view["x"] + in_view["width"], button
        for control in (page.get_by_label("Ask a question about the docs"), page.get_by_role("button", name="Ask", exact=True)):
            box = await control.bounding_box()
            assert panel["y"] <= box["y"] and box["y"] + box["height"] <= panel["y"] + panel["height"]
            assert 0 <= box["x"] and box["x"] + box["width"] <= PHONE["width"]


async def test_the_conversation_follows_a_streaming_answer_until_the_reader_scrolls_up(gateway, key, docs_site, browser):
    docs_site.pages["/follow.html"] = _embedding_page(gateway, api_key=key.secret, llm="dawdler")
    async with _browser_page(browser, viewport=SHORT_PHONE) as page:
        await page.goto(f"{docs_site.allowed}/follow.html")
        await page.get_by_role("button", name="Ask the docs").click()
        await _ask(page, QUESTION)
        log = page.get_by_role("log", name="Conversation")
        answer = log.locator(".docent-answer")
        await expect(answer).to_contain_text("w100 ", timeout=ANSWER_WITHIN_MS)  # longer than the panel by now
        overflow = "e => e.scrollHeight - e.clientHeight"
        assert await log.evaluate(overflow) > 0
        assert await log.evaluate(f"e => ({overflow})(e) - e.scrollTop") <= 2  # following the answer
        assert (await log.get_attribute("aria-busy")) == "true"

        box = await log.bounding_box()
        await page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        await page.mouse.wheel(0, -120)
        scrolled_to = await _scrolled_still(log)
        assert scrolled_to < await log.evaluate(overflow) - FOLLOWING_SLACK_PX
        seen = await answer.text_content()
        await expect(answer).not_to_have_text(seen, timeout=ANSWER_WITHIN_MS)  # more words came
        assert await log.evaluate("e => e.scrollTop") == scrolled_to  # and the reader stays where they scrolled


async def test_a_docs_site_of_another_origin_embeds_the_floating_widget(gateway, key, docs_site, page, db):
    docs_site.pages["/embedded.html"] = _embedding_page(gateway, api_key=key.secret)
    await page.goto(f"{docs_site.allowed}/embedded.html")

    toggle = page.get_by_role("button", name="Ask the docs")
    await toggle.click()
    assert (await toggle.get_attribute("aria-expanded")) == "true"
    assert await page.get_by_label("Ask a question about the docs").evaluate("e => e.getRootNode().activeElement === e")
    await _ask(page, QUESTION)
    dialog = page.get_by_role("dialog", name="Ask the docs")
    await _answered(page, 1)
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
    assert (await page.get_by_role("log", name="Conversation").get_attribute("aria-busy")) == "true"
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
        await page.get_by_role("button", name="Ask again").click()  # as the reader would, again
        await answered.or_(alert).first.wait_for(timeout=ANSWER_WITHIN_MS)
    assert await page.locator(".docent-turn").count() == 1  # asked again in place

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
