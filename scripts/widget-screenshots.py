#!/usr/bin/env python3
"""The screenshots in docs/widget.md: the web widget holding a real conversation.

Indexes docent's own docs (docs/, as `make demo` does, less the screenshots' descriptions,
published at a placeholder URL so that sources are links) into a fresh data folder,
serves them with `docent serve` (no LLM configured, so the answers are extractive:
passages quoted from the docs, not a test stub; no API keys), asks the page `/` a
question whose answer holds a code block and then a follow-up in headless Chromium,
and saves:

- docs/images/widget.png: the page at desktop width (1280 px);
- docs/images/widget-mobile.png: the same conversation on a 390 px wide phone;
- docs/images/widget-dark.png: the desktop page in the dark colour scheme.

Usage (from the repository root, after `make install system-deps`):

    .venv/bin/python scripts/widget-screenshots.py [--out docs/images] [--data-dir DIR]

`--data-dir` keeps the index (and the embedded PostgreSQL) between runs; by default a
temporary folder is used and removed. The script fails, saving nothing, when an answer
is not what the screenshots are meant to show (no code block, an abstention, an error).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
QUESTION = "What script tag embeds the widget in a docs site?"  # answered with the docs' HTML snippet
FOLLOW_UP = "And how do I allow its origin in the gateway?"  # "its": the docs site of the first question
# The docs are indexed as if published here (a placeholder host), so that their sources show as links.
DOCS_URL = "https://docent.example.com/docs/"
IMAGE_LINE = re.compile(r"^\s*(!\[|<img\b)")
DESKTOP = {"width": 1280, "height": 1100}  # tall enough for both turns whole
PHONE = {"width": 390, "height": 844}
READY_WITHIN_S = 600  # a cold start loads the models and the index on a small machine
ANSWER_WITHIN_MS = 120_000
STOP_WITHIN_S = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def docent_env(data_dir: Path) -> dict[str, str]:
    """The environment of a docent of its own: this data folder, no config file, no cluster, no keys."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("DOCENT_") and k not in ("DATABASE_URL", "RAY_ADDRESS", "REDIS_URL")}
    env.update({"DOCENT_DATA_DIR": str(data_dir), "DOCENT_AUTH_ENABLED": "false"})
    return env


def docs_without_screenshots(folder: Path) -> Path:
    """A copy of docs/ without its images' lines: the description of a screenshot is not an answer to
    index (it names the very questions asked, and would be quoted instead of the docs it shows)."""
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(ROOT / "docs", folder, ignore=shutil.ignore_patterns("images"))
    for page in folder.rglob("*.md"):
        lines = page.read_text().splitlines(keepends=True)
        page.write_text("".join(line for line in lines if not IMAGE_LINE.match(line)))
    return folder


def ingest(env: dict[str, str], docs: Path) -> None:
    print("indexing docs/ …", flush=True)
    subprocess.run([str(BIN / "docent"), "ingest", str(docs), "--base-url", DOCS_URL], env=env, cwd=ROOT,
                   check=True, stdout=subprocess.DEVNULL)


@contextmanager
def served(env: dict[str, str], log: Path):
    """`docent serve` on a free port, until the block ends; yields its URL once /readyz says ready."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    print(f"starting docent serve on {url} (log: {log}) …", flush=True)
    with log.open("w") as out:
        server = subprocess.Popen([str(BIN / "docent"), "serve", "--port", str(port)], env=env, cwd=ROOT,
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + READY_WITHIN_S
        while True:
            if server.poll() is not None:
                raise SystemExit(f"docent serve stopped (exit {server.returncode}):\n{log.read_text()[-4000:]}")
            try:
                if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"docent serve not ready after {READY_WITHIN_S} s:\n{log.read_text()[-4000:]}")
            time.sleep(1)
        yield url
    finally:
        server.send_signal(signal.SIGTERM)  # stops Serve and Ray as Ctrl-C does
        try:
            server.wait(STOP_WITHIN_S)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def ask(page: Page, question: str, turns: int) -> None:
    """Types `question` into the widget, sends it with Enter, and waits for the answer to be complete."""
    box = page.get_by_label("Ask a question about the docs")
    box.fill(question)
    box.press("Enter")
    page.locator(".docent-turn .docent-llm").nth(turns - 1).wait_for(timeout=ANSWER_WITHIN_MS)
    turn = page.locator(".docent-turn").nth(turns - 1)
    errors = turn.locator(".docent-error")
    if errors.is_visible():
        raise SystemExit(f"{question!r} failed: {errors.text_content()}")
    if turn.locator(".docent-notice").is_visible():
        raise SystemExit(f"{question!r} was not answered: the gateway found it not in the docs")
    print(f"\nQ: {question}", flush=True)
    searched = turn.locator(".docent-searched")
    if searched.is_visible():
        print(f"   {searched.text_content()}")
    print(f"A: {turn.locator('.docent-answer').inner_text()}\n   {turn.locator('.docent-llm').text_content()}")


def show_latest_turn(page: Page) -> None:
    """Scrolls the conversation so that the latest turn starts at its top, as far as the log can scroll."""
    page.locator(".docent-host").evaluate("""h => {
        const log = h.shadowRoot.querySelector(".docent-log");
        const turns = log.querySelectorAll(".docent-turn");
        const last = turns[turns.length - 1];
        log.scrollTop += last.getBoundingClientRect().top - log.getBoundingClientRect().top - 8;
    }""")


def screenshots(url: str, out: Path) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=DESKTOP, color_scheme="light")
            page.goto(f"{url}/")
            ask(page, QUESTION, 1)
            if page.locator(".docent-turn").first.locator("pre > code").count() == 0:
                raise SystemExit("the first answer has no code block: pick a question whose answer has one")
            ask(page, FOLLOW_UP, 2)
            if page.locator(".docent-turn").nth(1).locator(".docent-searched").is_hidden():
                print("note: the follow-up shows no 'Searched for' line (the gateway searched for it as asked)")
            shoot(page, out / "widget.png")  # as the reader sees it: the focus back in the question box

            page.emulate_media(color_scheme="dark")
            shoot(page, out / "widget-dark.png")

            # A phone (touch, 390 px, a 2x screen) showing the same conversation: the tab's sessionStorage,
            # where the widget keeps it, carried over as a reload would find it.
            stored = page.evaluate("JSON.stringify(Object.entries(sessionStorage))")
            phone = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
            phone.add_init_script(f"for (const [k, v] of {stored}) sessionStorage.setItem(k, v);")
            page = phone.new_page()
            page.goto(f"{url}/")
            page.locator(".docent-turn").nth(1).wait_for()
            show_latest_turn(page)
            shoot(page, out / "widget-mobile.png")
        finally:
            browser.close()


def shoot(page: Page, path: Path) -> None:
    page.wait_for_timeout(300)  # layout and scrolling settled
    page.screenshot(path=str(path))
    print(f"saved {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images", help="folder of the PNGs")
    parser.add_argument("--data-dir", type=Path, help="docent's data folder, kept (default: a temporary one)")
    args = parser.parse_args()
    if not CHROMIUM.is_file():
        raise SystemExit(f"needs Debian's chromium at {CHROMIUM}: make system-deps")
    temporary = args.data_dir is None
    data_dir = Path(tempfile.mkdtemp(prefix="docent-screenshots-")) if temporary else args.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    env = docent_env(data_dir)
    try:
        ingest(env, docs_without_screenshots(data_dir / "docs"))
        with served(env, data_dir / "serve.log") as url:
            screenshots(url, args.out.resolve())
    finally:
        if temporary:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
