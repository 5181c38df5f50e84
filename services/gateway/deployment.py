"""The Serve application: the gateway ingress composed with the five stage deployments.

`serve run services/gateway/serve.yaml` (or `docent serve`) calls `build_app` with the config's
`args`: `settings` names a docent YAML settings file, any other key overrides a setting
(`index: ray-docs`, `retrieval: {num_chunks: 5}`).
"""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve import Application
from ray.serve.handle import DeploymentHandle

from docent.db import database_url
from docent.observability import configure_tracing, send_logs_to_serve
from docent.settings import Settings, load_settings
from services.embedder.deployment import EmbedderDeployment
from services.gateway.app import create_app
from services.gateway.pipeline import QueryPipeline
from services.gateway.stages import RemoteGenerator, RemoteReranker, RemoteRetriever, RemoteRouter
from services.generator.deployment import GeneratorDeployment
from services.reranker.deployment import RerankerDeployment
from services.retriever.deployment import RetrieverDeployment
from services.router.deployment import RouterDeployment


@serve.deployment(name="gateway", max_ongoing_requests=100, ray_actor_options={"num_cpus": 0.2})
@serve.ingress()
class Gateway:
    def __init__(
        self,
        settings: Settings,
        retriever: DeploymentHandle,
        reranker: DeploymentHandle,
        router: DeploymentHandle,
        generator: DeploymentHandle,
    ):
        send_logs_to_serve(settings.serving.log_flush_s)  # docent's log lines join the replica's JSON log
        configure_tracing(settings.serving.otlp_traces_endpoint)
        self.pipeline = QueryPipeline(
            settings, RemoteRetriever(retriever), RemoteReranker(reranker), RemoteRouter(router), RemoteGenerator(generator)
        )

    def __serve_build_asgi_app__(self):
        """The FastAPI app, built in the replica around its own pipeline."""
        return create_app(self.pipeline)


def build_app(args: dict[str, Any] | None = None) -> Application:
    args = dict(args or {})
    settings = load_settings(args.pop("settings", None), **args)
    # Resolved once here, so no replica starts an embedded PostgreSQL of its own.
    settings = settings.model_copy(update={"database_url": database_url(settings)})
    # Replicas, autoscaling and CPUs/GPUs of each deployment come from the Serve config file.
    embedder = EmbedderDeployment.bind(settings)
    return Gateway.bind(
        settings,
        RetrieverDeployment.bind(settings, embedder),
        RerankerDeployment.bind(settings),
        RouterDeployment.bind(settings),
        GeneratorDeployment.bind(settings),
    )
