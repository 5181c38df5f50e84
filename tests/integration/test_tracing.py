"""A span per pipeline stage, exported through OpenTelemetry's SDK (an in-memory exporter stands in for OTLP)."""

from __future__ import annotations

import asyncio
import shutil
import uuid

import pytest

from docent.observability import configure_tracing
from docent.settings import Settings
from docent.types import QueryOptions, QueryRequest
from ingest.pipeline import run_ingest
from services.gateway.local import close_local_pipeline, open_local_pipeline
from tests.conftest import FIXTURES

pytestmark = pytest.mark.integration

STAGES = {"docent.prepare", "docent.retrieve", "docent.tag", "docent.route", "docent.rerank", "docent.generate"}


@pytest.fixture(scope="module")
def spans():
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    assert configure_tracing(None, exporter=exporter)
    assert not configure_tracing(None)  # nothing configured: nothing installed
    return exporter


async def test_each_stage_of_an_answer_is_a_span_under_one_trace(ray_local, spans, tmp_path):
    shutil.copytree(FIXTURES / "site", tmp_path / "docs")
    settings = Settings(index=f"trace-{uuid.uuid4().hex[:8]}", chunking={"chunk_size": 200, "chunk_overlap": 20})
    await asyncio.to_thread(run_ingest, tmp_path / "docs", settings, base_url="https://orbit.example/docs/")
    pipeline = await open_local_pipeline(settings)
    try:
        spans.clear()
        answer = await pipeline.answer(QueryRequest(query="How do I install Orbit?", options=QueryOptions(llm="extractive")))
    finally:
        await close_local_pipeline(pipeline)
    finished = {span.name: span for span in spans.get_finished_spans()}
    assert STAGES <= set(finished), set(finished)
    prepare = finished["docent.prepare"]
    assert prepare.attributes["docent.answer_id"] == answer.answer_id and prepare.attributes["docent.request_id"]
    assert finished["docent.generate"].attributes["docent.answer_id"] == answer.answer_id
    for stage in ("docent.retrieve", "docent.tag", "docent.route", "docent.rerank"):
        assert finished[stage].parent.span_id == prepare.context.span_id  # nested under the question's span
        assert finished[stage].context.trace_id == prepare.context.trace_id
    assert finished["docent.generate"].attributes["docent.answered_by"] == "extractive"
    assert finished["docent.retrieve"].end_time - finished["docent.retrieve"].start_time > 0
