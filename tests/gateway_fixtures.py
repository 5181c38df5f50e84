"""A served docent application for integration tests, and a real Redis server.

`serve_docent(...)` deploys the real Serve application (real PostgreSQL, the test LLM
server) over the fixture docs and returns once `/readyz` is 200; the `redis_server`
fixture starts Debian's `redis-server` on a free port. Test modules build their own
module-scoped fixtures from these.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
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
