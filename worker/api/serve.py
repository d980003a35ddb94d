"""Serve the admin API: the process logs like the worker (:mod:`worker.logs`), uvicorn's
access and error lines included, so production gets one JSON object per line."""

from __future__ import annotations

import logging

import uvicorn

from worker.api.app import create_app
from worker.logs import configure_logging
from worker.settings import Settings

log = logging.getLogger(__name__)


def serve(settings: Settings, *, host: str, port: int) -> None:
    configure_logging(settings)
    if settings.metrics_token is None and not settings.embedded:
        log.warning("METRICS_TOKEN is not set: /metrics is public (README, Admin API)")
    # log_config=None: uvicorn installs no handlers of its own; its loggers propagate to
    # the root handler configure_logging set up.
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_config=None,
        log_level=settings.log_level.lower(),
    )
