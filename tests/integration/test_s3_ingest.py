"""Ingesting from object storage: a real S3-compatible server (moto's), pyarrow's S3 client, the real ingest."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid

import pytest

from docent.db import connect
from docent.settings import Settings
from docent.store import IndexStore
from ingest.errors import SourceError
from ingest.pipeline import run_ingest
from ingest.remote import mirror, mirror_root
from tests.conftest import FIXTURES, ROOT

pytestmark = pytest.mark.integration

BASE_URL = "https://orbit.example/docs/"


@pytest.fixture(scope="module")
def s3_server():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def bucket(s3_server, monkeypatch):
    """A fresh bucket holding the fixture site under `site/`, and its S3 client."""
    from pyarrow import fs

    for name, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
                        "AWS_ENDPOINT_URL": s3_server, "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(name, value)
    client = fs.S3FileSystem(endpoint_override=s3_server, scheme="http", access_key="test", secret_key="test",
                             region="us-east-1", allow_bucket_creation=True, allow_bucket_deletion=True)
    name = f"docs-{uuid.uuid4().hex[:8]}"
    client.create_dir(name)
    for path in sorted((FIXTURES / "site").rglob("*")):
        if path.is_file():
            with client.open_output_stream(f"{name}/site/{path.relative_to(FIXTURES / 'site').as_posix()}") as out:
                out.write(path.read_bytes())
    return client, name


async def _chunk_sources(settings: Settings) -> set[str]:
    conn = await connect(settings)
    try:
        store = IndexStore(conn)
        index = await store.require(settings.index_name)
        return await store.pages(index)
    finally:
        await conn.close()


def test_an_s3_prefix_is_ingested_like_a_folder_and_kept_in_step(ray_local, bucket):
    client, name = bucket
    uri = f"s3://{name}/site"
    settings = Settings(index=f"s3-{uuid.uuid4().hex[:8]}", chunking={"chunk_size": 200, "chunk_overlap": 20})

    first = run_ingest(uri, settings, base_url=BASE_URL)
    local_files = sorted(p for p in (FIXTURES / "site").rglob("*") if p.is_file())
    assert first.files_read == len(local_files) and first.chunks_added > 0
    assert f"{BASE_URL}guide/install.html" in asyncio.run(_chunk_sources(settings))

    again = run_ingest(uri, settings, base_url=BASE_URL)  # nothing changed: nothing downloaded or embedded
    assert again.chunks_added == 0 and again.files_unchanged == len(local_files)

    with client.open_output_stream(f"{name}/site/guide/extra.md") as out:
        out.write(b"# Extra\n\nOrbit also runs on a laptop, with the `orbit dev` command.\n")
    client.delete_file(f"{name}/site/guide/install.rst")
    changed = run_ingest(uri, settings, base_url=BASE_URL, prune=True)
    assert changed.files_read == 1 and changed.files_removed == 1
    pages = asyncio.run(_chunk_sources(settings))
    assert f"{BASE_URL}guide/extra.html" in pages and f"{BASE_URL}guide/install.html" not in pages
    assert not (mirror_root(uri, settings) / "guide" / "install.rst").exists()


def test_unreadable_sources_are_clear_errors(bucket):
    _, name = bucket
    settings = Settings()
    with pytest.raises(SourceError, match="no objects under"):
        mirror(f"s3://{name}/nothing-here", settings)
    with pytest.raises(SourceError, match="cannot list s3://no-such-bucket-"):
        mirror(f"s3://no-such-bucket-{uuid.uuid4().hex[:6]}/docs", settings)


def test_the_cli_ingests_from_s3(ray_local, bucket):
    _, name = bucket
    index = f"s3cli-{uuid.uuid4().hex[:8]}"
    done = subprocess.run([sys.executable, "-m", "docent", "ingest", f"s3://{name}/site", "--base-url", BASE_URL,
                           "--index", index, "--chunk-size", "200", "--chunk-overlap", "20"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert f"index {index}" in done.stdout
    missing = subprocess.run([sys.executable, "-m", "docent", "ingest", f"s3://{name}/absent", "--index", index],
                             cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert missing.returncode == 2 and "no objects under" in missing.stderr and "Traceback" not in missing.stderr
