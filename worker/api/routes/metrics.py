"""``/metrics``: this process's Prometheus metrics plus the backlog read from the database.

Behind ``METRICS_TOKEN`` when it is set (``Authorization: Bearer <token>``). The backlog
is read at most once per ``STATE_TTL`` (by the injected clock) however many scrapers
call, so a scrape is not a database query.
"""

from __future__ import annotations

import hmac
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Annotated, cast

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from worker.api.auth import bearer_token
from worker.api.errors import Unauthorized
from worker.clock import Clock

STATE_TTL = timedelta(seconds=5)
"""Well under any scrape interval worth alerting on (the alerts span minutes)."""


class CachedCollector(Collector):
    """Serves ``inner``'s last successful reading while it is younger than ``ttl``."""

    def __init__(self, inner: Collector, clock: Clock, ttl: timedelta = STATE_TTL) -> None:
        self.inner = inner
        self.clock = clock
        self.ttl = ttl
        self.lock = threading.Lock()
        self.read_at: datetime | None = None
        self.families: list[Metric] = []

    def collect(self) -> Iterator[Metric]:
        with self.lock:
            now = self.clock.now()
            fresh = self.read_at is not None and self.read_at <= now < self.read_at + self.ttl
            if not fresh:
                families = list(self.inner.collect())
                # A failed read (database away) yields nothing: not cached, tried next time.
                if families:
                    self.families, self.read_at = families, now
                else:
                    self.families, self.read_at = [], None
            return iter(list(self.families))


class MetricsEndpoint:
    def __init__(self, state: Collector, clock: Clock, token: str | None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(CachedCollector(state, clock))
        self.token = token

    def authorize(self, request: Request) -> None:
        if self.token is None:
            return
        given = bearer_token(request)
        if given is None or not hmac.compare_digest(given.encode(), self.token.encode()):
            raise Unauthorized()

    def render(self) -> bytes:
        return generate_latest(REGISTRY) + generate_latest(self.registry)


def get_endpoint(request: Request) -> MetricsEndpoint:
    endpoint = cast(MetricsEndpoint, request.app.state.metrics)
    endpoint.authorize(request)
    return endpoint


router = APIRouter()


@router.get("/metrics", include_in_schema=False)
def metrics(endpoint: Annotated[MetricsEndpoint, Depends(get_endpoint)]) -> Response:
    return Response(endpoint.render(), media_type=CONTENT_TYPE_LATEST)
