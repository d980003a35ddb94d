"""``/metrics``: this process's Prometheus metrics plus the backlog read from the database."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from worker.api.deps import Context
from worker.metrics import StateCollector

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
def metrics(ctx: Context) -> Response:
    state = CollectorRegistry(auto_describe=False)
    state.register(StateCollector(ctx.sessions, ctx.clock))
    body = generate_latest(REGISTRY) + generate_latest(state)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
