"""Serve the admin API: the process logs like the worker (:mod:`worker.logs`), uvicorn's
access and error lines included, so production gets one JSON object per line."""

from __future__ import annotations

import logging

import uvicorn

from worker.api.app import create_app
from worker.logs import configure_logging
from worker.settings import Settings

log = logging.getLogger(__name__)


def serve(settings: Settings, *, host: str, port: int, workers: int = 1) -> None:
    configure_logging(settings)
    if settings.metrics_token is None and not settings.embedded:
        log.warning("METRICS_TOKEN is not set: /metrics is public (README, Admin API)")
    # log_config=None: uvicorn installs no handlers of its own; its loggers propagate to
    # the root handler configure_logging set up.
    level = settings.log_level.lower()
    if workers > 1:
        # Python runs one request's work at a time per process: one process per core
        # (measured: tests/perf/bench_api.py --load, README "Performance"). Each spawned
        # process imports worker.api.asgi, which configures logging and builds the app
        # from the same environment.
        uvicorn.run(
            "worker.api.asgi:app",
            workers=workers,
            host=host,
            port=port,
            log_config=None,
            log_level=level,
        )
    else:
        uvicorn.run(create_app(settings), host=host, port=port, log_config=None, log_level=level)
