"""The admin API's composition root: settings in, a FastAPI app out. Nothing at import."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from anyio import to_thread
from celery import Celery
from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session, sessionmaker

from worker.actions import Publish
from worker.api import errors
from worker.api.broker import Probe, celery_probe, celery_publisher
from worker.api.console import router as console_router
from worker.api.console.orgs import defaults_from as console_defaults
from worker.api.deps import ApiContext
from worker.api.edge import Edge, strict_query
from worker.api.fast_reads import FastReads
from worker.api.openapi import served
from worker.api.readers import reader_for
from worker.api.readiness import Readiness
from worker.api.routes import callbacks, health, metrics, speko_webhooks, webhooks
from worker.api.routes.metrics import MetricsEndpoint
from worker.api.routes.speko_webhooks import Receiver, SendEvent, celery_sender
from worker.celery.config import publisher
from worker.clock import Clock, SystemClock
from worker.db.engine import (
    API_POOL_OVERFLOW,
    API_POOL_SIZE,
    API_READ_POOL_SIZE,
    make_engine,
    make_sessions,
)
from worker.metrics import StateCollector
from worker.platform_events.signature import parse_secrets
from worker.settings import Settings


def create_app(
    settings: Settings,
    *,
    sessions: sessionmaker[Session] | None = None,
    celery: Celery | None = None,
    publish: Publish | None = None,
    broker_probe: Probe | None = None,
    clock: Clock | None = None,
    send_event: SendEvent | None = None,
    fast_reads: bool = True,
) -> FastAPI:
    """Build the app. Tests pass their own session factory, Celery app or clock;
    whatever is not passed is built from ``settings`` (and closed at shutdown).
    ``fast_reads=False``: every request through FastAPI (tests compare the two)."""
    owned: list[Any] = []
    if sessions is None:
        # A restart's closed connections are dropped at checkout (worker/db/engine.py).
        engine = make_engine(
            settings.effective_database_url,
            pool_size=API_POOL_SIZE,
            max_overflow=API_POOL_OVERFLOW,
            drop_closed=True,
        )
        owned.append(engine.dispose)
        sessions = make_sessions(engine)
    if publish is None or broker_probe is None:
        if celery is None:
            celery = publisher(settings)
            owned.append(celery.close)
        publish = publish or celery_publisher(celery)
        if broker_probe is None:
            kept = celery_probe(celery)
            owned.insert(0, kept.close)
            broker_probe = kept

    # Platform events in (POST /webhooks/speko): stored, then a task per event.
    if send_event is None:
        if celery is None:
            celery = publisher(settings)
            owned.append(celery.close)
        send_event = celery_sender(celery)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Sync routes run in anyio's threadpool (40 threads by default): as many threads as
        # pooled connections, so a request waits in the event loop, not in a thread blocked
        # on the pool, and the threads do not fight over one GIL (tests/perf/bench_api.py).
        to_thread.current_default_thread_limiter().total_tokens = API_POOL_SIZE
        # What start-up built (Celery, SQLAlchemy, FastAPI: over 100,000 objects) lives
        # as long as the process: out of the collector's sight, a full collection no
        # longer walks it mid-request (p99 under load 795 -> 446 ms for a get, same run).
        gc.freeze()
        yield
        await reader.close()
        for close in owned:
            close()

    # FastAPI's generated document and docs pages are off: /openapi.json serves the
    # platform's published contract instead (see worker.api.openapi). No slash redirects:
    # Starlette builds their Location from the Host header, before authentication.
    app = FastAPI(
        title="Callbacks admin API",
        # Off: we export Prometheus metrics, not OpenTelemetry, and checking the global
        # OpenTelemetry providers on every request took 1-12 % of a read's CPU (py-spy).
        telemetry={"tracing": False, "metrics": False, "logs": False},
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        redirect_slashes=False,
        dependencies=[Depends(strict_query)],
    )
    clock = clock or SystemClock()
    # The receiver's 5-minute window is read from the same clock as everything else.
    hooks = (
        parse_secrets(settings.speko_webhook_secret, clock.now)
        if settings.speko_webhook_secret
        else []
    )
    # Reads on the event loop (PostgreSQL, API_READS=loop) on a pool of their own, or on
    # the sync engine in the threadpool.
    reader = reader_for(
        sessions, on_loop=settings.api_reads == "loop", pool_size=API_READ_POOL_SIZE
    )
    app.state.context = ApiContext(
        sessions=sessions,
        clock=clock,
        publish=publish,
        broker_probe=broker_probe,
        claim_lease=timedelta(seconds=settings.claim_lease),
        readiness=Readiness(sessions, broker_probe, clock),
        reader=reader,
        lateness=settings.lateness,
        webhook_allowed=settings.webhook_allowed,
    )
    app.state.metrics = MetricsEndpoint(
        StateCollector(sessions, clock), clock, token=settings.metrics_token
    )
    app.state.speko_receiver = Receiver(hooks, send_event)
    app.state.console_defaults = console_defaults(settings)
    spec = served()

    @app.get("/openapi.json", include_in_schema=False)
    def openapi() -> JSONResponse:
        return JSONResponse(spec)

    app.include_router(callbacks.router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(speko_webhooks.router)
    app.include_router(webhooks.router)
    app.include_router(console_router)  # the operator console (issue 16)
    # A call report carries its transcript: its route reads up to its own, larger limit.
    app.add_middleware(Edge, limits={speko_webhooks.PATH: settings.speko_webhook_max_body})
    # Outside Edge and the routes, inside CatchAll (installed next): the plain case of
    # the two hot reads without FastAPI's stack; the rest falls through (fast_reads.py).
    if fast_reads:
        app.add_middleware(FastReads, fastapi=app)
    errors.install(app)
    return app
