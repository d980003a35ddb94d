"""The admin API's composition root: settings in, a FastAPI app out. Nothing at import."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from celery import Celery
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session, sessionmaker

from worker.admin import Publish
from worker.api import errors
from worker.api.broker import Probe, celery_probe, celery_publisher
from worker.api.deps import ApiContext
from worker.api.openapi import document
from worker.api.routes import callbacks, health, metrics
from worker.clock import Clock, SystemClock
from worker.db.engine import make_engine, make_sessions
from worker.settings import Settings


def create_app(
    settings: Settings,
    *,
    sessions: sessionmaker[Session] | None = None,
    celery: Celery | None = None,
    publish: Publish | None = None,
    broker_probe: Probe | None = None,
    clock: Clock | None = None,
) -> FastAPI:
    """Build the app. Tests pass their own session factory, Celery app or clock;
    whatever is not passed is built from ``settings`` (and closed at shutdown)."""
    owned: list[Any] = []
    if sessions is None:
        # A restart's closed connections are dropped at checkout (worker/db/engine.py).
        engine = make_engine(settings.effective_database_url, drop_closed=True)
        owned.append(engine.dispose)
        sessions = make_sessions(engine)
    if publish is None or broker_probe is None:
        if celery is None:
            from worker.celery_app import create_celery

            celery = create_celery(settings)
            owned.append(celery.close)
        publish = publish or celery_publisher(celery)
        broker_probe = broker_probe or celery_probe(celery)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        for close in owned:
            close()

    # FastAPI's generated document and docs pages are off: /openapi.json serves the
    # platform's published contract instead (see worker.api.openapi).
    app = FastAPI(
        title="Callbacks admin API",
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.context = ApiContext(
        sessions=sessions,
        clock=clock or SystemClock(),
        publish=publish,
        broker_probe=broker_probe,
        claim_lease=timedelta(seconds=settings.claim_lease),
        lateness=settings.lateness,
    )
    spec = document()

    @app.get("/openapi.json", include_in_schema=False)
    def openapi() -> JSONResponse:
        return JSONResponse(spec)

    app.include_router(callbacks.router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    errors.install(app)
    return app
