"""What every endpoint asks of the app before it runs: its pipeline, its policies and the caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.gateway.asking import Asking, classify
from services.gateway.errors import ServiceError
from services.gateway.pipeline import QueryPipeline
from services.gateway.policies import Caller, GatewayPolicies


def pipeline_of(request: Request) -> QueryPipeline:
    pipeline = request.app.state.pipeline
    if pipeline is None:
        raise ServiceError(503, "the gateway is starting", 1)
    return pipeline


def policies_of(request: Request) -> GatewayPolicies:
    policies = request.app.state.policies
    if policies is None:
        raise ServiceError(503, "the gateway is starting", 1)
    return policies


def caller_with(scope: str):
    """A dependency: the authorised, rate-limited caller (each scope counted apart); runs before the body is read."""

    async def caller(request: Request) -> Caller:
        policies = policies_of(request)
        try:
            who = await policies.authorize(request, scope)
            await policies.limit(who, scope)
        except Exception as exc:  # noqa: BLE001 - a database outage while checking a key is a 503, not a 500
            raise classify(exc, policies.settings.serving.retry_after_s) from None
        return who

    return caller


Asker = Annotated[Caller, Depends(caller_with("query"))]
Rater = Annotated[Caller, Depends(caller_with("feedback"))]  # a public widget key must not flood the votes




def asking(request: Request, caller: Caller) -> Asking:
    """The caller's question, to be answered by this app's pipeline under its policies."""
    return Asking(pipeline_of(request), policies_of(request), request.app.state.metrics, caller)
