"""`docent serve` as an operator starts it: from an empty directory outside the checkout.

Nothing it needs may come from the working directory: the Serve config ships in the
package. The commands run as subprocesses with their own local Ray, the tests' database
and an index of the fixture site ingested the same way.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import FIXTURES
from tests.gateway_fixtures import docent_serving, free_port

pytestmark = pytest.mark.integration

READY_TIMEOUT_S = 300
STOP_TIMEOUT_S = 60


def _docent(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=READY_TIMEOUT_S, check=False)


def test_docent_serve_from_an_empty_directory_becomes_ready_and_answers(tmp_path, index_name):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    docs = shutil.copytree(FIXTURES / "site", tmp_path / "docs")
    # RAY_ADDRESS=local: a Ray of their own, as on an operator's machine, not the one these tests run on.
    env = {**os.environ, "DOCENT_INDEX": index_name, "DOCENT_AUTH_ENABLED": "false", "RAY_ADDRESS": "local", "PYTHONPATH": ""}
    ingested = _docent("ingest", str(docs), cwd=elsewhere, env=env)
    assert ingested.returncode == 0, ingested.stderr

    port = free_port()
    with docent_serving(["--port", str(port)], env, cwd=elsewhere) as (server, lines):
        url = f"http://127.0.0.1:{port}"
        ready = httpx.get(f"{url}/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        answer = httpx.post(f"{url}/query", json={"query": "How do I submit a job?"}, timeout=60)
        assert answer.status_code == 200 and answer.json()["index"] == index_name and answer.json()["sources"]
        # `docent query` finds this gateway on its own port, with no --url.
        asked = _docent("query", "How do I submit a job?", "--json", cwd=elsewhere, env=env)
        assert asked.returncode == 0 and '"index"' in asked.stdout, asked.stdout + asked.stderr
    assert server.returncode == 0, "".join(lines)
    assert "stopping" in "".join(lines) and not list(elsewhere.iterdir())  # nothing written where it was started
    assert not (Path(env["DOCENT_DATA_DIR"]) / "serving.json").exists()  # its note of where it served is gone
