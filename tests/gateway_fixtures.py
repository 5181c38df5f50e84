"""A served docent application for integration tests, and a real Redis server.

`serve_docent(...)` deploys the real Serve application (real PostgreSQL, the test LLM
server) over the fixture docs and returns once `/readyz` is 200; the `redis_server`
fixture starts Debian's `redis-server` on a free port. Test modules build their own
module-scoped fixtures from these.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from docent.settings import Settings
from tests.conftest import FIXTURES, require

BASE_URL = "https://orbit.example/docs/"
READY_WITHIN_S = 90


SERVE_READY_TIMEOUT_S = 300
SERVE_STOP_TIMEOUT_S = 60


@contextmanager
def docent_serving(args: list[str], env: dict[str, str], cwd: Path | None = None) -> Iterator[tuple[subprocess.Popen, list[str]]]:
    """`docent serve ARGS` as a process, once it says it serves; stopped with SIGTERM (as Ctrl-C) on the way out.

    Yields the process and the lines it has printed so far (more arrive while it runs)."""
    server = subprocess.Popen([sys.executable, "-m", "cli", "serve", *args], cwd=cwd, env=env | {"PYTHONUNBUFFERED": "1"},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(server.stdout), daemon=True)
    reader.start()
    try:
        # Deployed: `docent serve` says so once every deployment runs (a stop before that is an interrupted start).
        deadline = time.monotonic() + SERVE_READY_TIMEOUT_S
        while not any("docent is serving" in line for line in lines) and server.poll() is None:
            assert time.monotonic() < deadline, "".join(lines)
            time.sleep(0.5)
        assert server.poll() is None, "".join(lines)
        yield server, lines
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=SERVE_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        reader.join(timeout=10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServedGateway:
    url: str
    index: str
    args: dict[str, Any]
    docs: Path  # the ingested copy of the fixture docs, free to edit and ingest again


def answering_llms(base_url: str) -> list[dict]:
    """Two LLMs of the test server that answer: `echo` (priced) and `dawdler` (tokens slowly)."""
    llm = {"base_url": base_url, "api_key_env": "DOCENT_TEST_NO_KEY", "context_length": 2048, "max_tokens": 64}
    return [
        {**llm, "name": "echo", "model": "echo", "prompt_price": 1.0, "sampled_price": 2.0},
        {**llm, "name": "dawdler", "model": "tokens-slow"},
    ]


@contextmanager
def serve_docent(work: Path, **args: Any) -> Iterator[ServedGateway]:
    """The docent Serve app on a free port, its index ingested from the fixture docs; `args` override settings."""
    from ray import serve

    from ingest.pipeline import run_ingest
    from services.gateway.deployment import build_app

    args = {"index": f"gw-{uuid.uuid4().hex[:8]}", "chunking": {"chunk_size": 200, "chunk_overlap": 20}, **args}
    index = args["index"]
    docs = work / "docs"
    shutil.copytree(FIXTURES / "site", docs)
    where = {k: args[k] for k in ("data_dir", "database_url") if k in args}  # the gateway's own database
    run_ingest(docs, Settings(index=index, chunking=args["chunking"], **where), base_url=BASE_URL)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(args), name="docent", route_prefix="/")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url)
        yield ServedGateway(url, index, args, docs)
    finally:
        serve.shutdown()


def wait_ready(url: str) -> None:
    deadline = time.monotonic() + READY_WITHIN_S
    with httpx.Client(base_url=url, timeout=10) as client:
        while True:
            response = client.get("/readyz")
            if response.status_code == 200:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"gateway not ready after {READY_WITHIN_S} s: {response.text}")
            time.sleep(0.5)


@dataclass
class RedisServer:
    url: str
    port: int
    process: subprocess.Popen

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def start_redis(port: int | None = None) -> RedisServer:
    """A real redis-server on loopback, nothing persisted."""
    binary = shutil.which("redis-server")
    require(binary is not None, "redis-server (Debian package redis-server) on PATH")
    port = port or free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return RedisServer(f"redis://127.0.0.1:{port}/0", port, process)
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"redis-server did not start on port {port}") from None
            time.sleep(0.05)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = start_redis()
    yield server
    server.stop()
