"""Retrieval over a real index: semantic (pgvector HNSW), lexical (persisted BM25), hybrid."""

from __future__ import annotations

import shutil
import uuid

import pytest

from docent.settings import Settings
from docent.types import page_of
from ingest.pipeline import run_ingest
from services.retriever.search import LocalSearch
from tests.conftest import FIXTURES

pytestmark = pytest.mark.integration

BASE_URL = "https://orbit.example/docs/"
RETRIES = f"{BASE_URL}guide/configuration.html#retries-and-backoff"


@pytest.fixture(scope="module")
def orbit_index(ray_local, tmp_path_factory) -> Settings:
    docs = tmp_path_factory.mktemp("orbit") / "docs"
    shutil.copytree(FIXTURES / "site", docs)
    settings = Settings(index=f"search-{uuid.uuid4().hex[:8]}", chunking={"chunk_size": 200, "chunk_overlap": 20})
    run_ingest(docs, settings, base_url=BASE_URL)
    return settings


async def _search(settings: Settings, query: str, **kwargs):
    local = await LocalSearch.open(settings)
    try:
        return await local.search(query, **kwargs)
    finally:
        await local.close()


@pytest.mark.parametrize("mode", ["semantic", "lexical", "hybrid"])
async def test_every_mode_finds_the_answering_section(orbit_index, mode):
    hits = await _search(orbit_index, "how many times is a failed job retried, and how long between attempts?", mode=mode, k=3)
    assert hits and hits[0].source == RETRIES
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))


async def test_results_come_from_distinct_pages_and_respect_k(orbit_index):
    hits = await _search(orbit_index, "orbit job", mode="hybrid", k=4)
    pages = [page_of(h.source) for h in hits]
    assert len(hits) == 4 and len(set(pages)) == len(pages)


async def test_without_a_page_limit_one_page_may_fill_the_results(orbit_index):
    unlimited = orbit_index.model_copy(
        update={"retrieval": orbit_index.retrieval.model_copy(update={"max_chunks_per_page": 0})}
    )
    hits = await _search(unlimited, "retries backoff timeouts max_retries job_timeout", mode="lexical", k=4)
    pages = [page_of(h.source) for h in hits]
    assert len(set(pages)) < len(pages)


async def test_reference_fusion_returns_semantic_plus_lexical_hits(orbit_index):
    reference = orbit_index.model_copy(
        update={"retrieval": orbit_index.retrieval.model_copy(update={"fusion": "reference", "max_chunks_per_page": 0})}
    )
    hits = await _search(reference, "cancel a running job", mode="hybrid", k=3, lexical_k=2)
    assert 3 <= len(hits) <= 5
    assert len({h.chunk_id for h in hits}) == len(hits)


async def test_lexical_search_matches_identifiers(orbit_index):
    hits = await _search(orbit_index, "job_timeout", mode="lexical", k=1)
    assert hits[0].source == f"{BASE_URL}guide/configuration.html#timeouts"


async def test_sentence_window_and_parent_section_widen_the_hit(orbit_index):
    question = "how many times is a failed job retried?"
    plain = await _search(orbit_index, question, mode="lexical", k=1)
    window = await _search(orbit_index, question, mode="lexical", k=1, strategy="sentence-window")
    section = await _search(orbit_index, question, mode="lexical", k=1, strategy="parent-section")

    assert plain[0].chunk_id == window[0].chunk_id == section[0].chunk_id
    assert plain[0].text in window[0].text and len(window[0].text) >= len(plain[0].text)
    assert window[0].text in section[0].text or len(section[0].text) <= orbit_index.retrieval.section_budget
    assert "max_retries" in section[0].text and "backoff_seconds" in section[0].text  # the whole small section
    assert "job_timeout" not in section[0].text  # the next section is not part of it
