"""The query pipeline in this process, without Ray Serve: for benchmarks, evaluation and tests."""

from __future__ import annotations

import asyncio

from docent.observability import configure_tracing
from docent.settings import Settings
from services.embedder.queries import QueryEmbedder
from services.gateway.pipeline import QueryPipeline
from services.gateway.stages import LocalGenerator
from services.generator.extractive import load_extractive
from services.generator.generator import Generator
from services.reranker.service import RerankerService
from services.retriever.service import RetrieverService
from services.router.service import RouterService


async def open_local_pipeline(settings: Settings, wait_ready: bool = True) -> QueryPipeline:
    """Every stage as a plain object; with `wait_ready`, returns once the default index is loaded."""
    configure_tracing(settings.serving.otlp_traces_endpoint)
    embedder = QueryEmbedder(settings.embedding, settings.serving.query_cache_size, settings.onnx_dir)
    embedder.warm_up()

    retriever = RetrieverService(settings, embedder.embed_query)
    await retriever.start()
    generator = Generator(
        settings.generation, load_extractive(settings.embedding, settings.generation), not_covered=settings.abstention.answer
    )
    pipeline = QueryPipeline(settings, retriever, RerankerService(settings), RouterService(settings), LocalGenerator(generator))
    if wait_ready:
        task = retriever.loading.get(settings.index_name)
        if task is not None:
            await asyncio.wait([task])
    return pipeline


async def close_local_pipeline(pipeline: QueryPipeline) -> None:
    await pipeline.retriever.close()
    await pipeline.generator.aclose()
    await pipeline.condenser.aclose()
