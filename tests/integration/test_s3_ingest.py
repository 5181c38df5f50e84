"""Ingesting from object storage: a real S3-compatible server (moto's), pyarrow's S3 client, the real ingest."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid

import pytest
import yaml

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


def test_the_cli_ingests_from_s3(ray_local, bucket, tmp_path):
    client, name = bucket
    index = f"s3cli-{uuid.uuid4().hex[:8]}"
    done = subprocess.run([sys.executable, "-m", "docent", "ingest", f"s3://{name}/site", "--base-url", BASE_URL,
                           "--index", index, "--chunk-size", "200", "--chunk-overlap", "20"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert f"index {index}" in done.stdout
    missing = subprocess.run([sys.executable, "-m", "docent", "ingest", f"s3://{name}/absent", "--index", index],
                             cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert missing.returncode == 2 and "no objects under" in missing.stderr and "Traceback" not in missing.stderr


    # Eval sets and references are read from the bucket; golden sets and references are written to it.
    questions = [{"question": "How do I install Orbit with pip?", "source": f"{BASE_URL}guide/install.html#install-pip"}]
    with client.open_output_stream(f"{name}/eval/eval.jsonl") as out:
        out.write("".join(json.dumps(q) + "\n" for q in questions).encode())
    with client.open_output_stream(f"{name}/eval/references.json") as out:
        out.write(json.dumps([{"question": questions[0]["question"], "answer": "pip install orbit"}]).encode())
    run = _docent("eval", "run", "--eval", f"s3://{name}/eval/eval.jsonl", "--references",
                  f"s3://{name}/eval/references.json", "--index", index, "--llm", "extractive", "--out",
                  str(tmp_path / "run"), "--json")
    assert run.returncode == 0, run.stderr
    every = json.loads(run.stdout)["aggregates"]["all"]
    assert every["questions"] == 1 and every["with_reference"] == 1 and every["retrieval_score"] == 1.0
    absent = _docent("eval", "run", "--eval", f"s3://{name}/eval/absent.jsonl", "--index", index)
    assert absent.returncode == 2 and f"no object at s3://{name}/eval/absent.jsonl" in " ".join(absent.stderr.split())


def test_golden_sets_are_written_to_s3(ray_local, bucket, llm_server, tmp_path):
    client, name = bucket
    index = f"s3gold-{uuid.uuid4().hex[:8]}"
    settings = Settings(index=index, chunking={"chunk_size": 200, "chunk_overlap": 20})
    run_ingest(f"s3://{name}/site", settings, base_url=BASE_URL)
    config = tmp_path / "docent.yaml"
    config.write_text(yaml.safe_dump({"generation": {"llms": [
        {"name": "golden", "model": "golden", "base_url": llm_server.base_url}]}}))
    target = f"s3://{name}/golden/set.jsonl"
    done = _docent("--config", str(config), "eval", "golden", "--llm", "golden", "--index", index, "--sections", "3",
                   "--min-chars", "50", "--seed", "1", "--out", target, "--json")
    assert done.returncode == 0, done.stderr
    kept = json.loads(done.stdout)["kept"]
    with client.open_input_stream(f"{name}/golden/set.jsonl") as written:
        rows = [json.loads(line) for line in written.read().decode().splitlines()]
    assert len(rows) == kept > 0 and all({"question", "source", "answer"} <= set(r) for r in rows)


def _docent(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "docent", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False)
