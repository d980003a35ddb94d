"""The worker's Celery app: its configuration (:mod:`worker.celery.config`), its tasks
(:mod:`worker.celery.tasks`), its runtime built on first use, logging and metrics."""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import Celery
from celery.signals import beat_init, setup_logging, worker_init
from prometheus_client import REGISTRY, CollectorRegistry, multiprocess, start_http_server

from worker import metrics
from worker.celery import tasks
from worker.celery.config import celery_config, prepare_broker
from worker.clock import SystemClock
from worker.db.engine import make_engine, make_sessions
from worker.logs import configure_logging
from worker.runtime import Runtime, build_runtime, require_dialer
from worker.settings import Settings


class CallbacksCelery(Celery):
    """A Celery app that carries its settings and builds its runtime on first use."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__("worker", **kwargs)
        self.settings = settings
        self._runtime: Runtime | None = None
        self._runtime_lock = threading.Lock()

    @property
    def runtime(self) -> Runtime:
        # Lazily, so a prefork child builds its own engine and HTTP pool after the fork.
        if self._runtime is None:
            with self._runtime_lock:
                if self._runtime is None:
                    self._runtime = build_runtime(self.settings)
        return self._runtime


def create_celery(settings: Settings) -> CallbacksCelery:
    """The app a worker or beat process runs: tasks, logging and metrics included."""
    prepare_broker(settings)
    app = CallbacksCelery(settings)
    app.config_from_object(celery_config(settings))
    tasks.register(app, lambda: app.runtime)
    _refuse_without_dialer(app)
    _configure_logging(settings)
    _serve_metrics(settings)
    return app


def _refuse_without_dialer(app: CallbacksCelery) -> None:
    """A worker or beat with no provider outside the embedded mode stops at start-up,
    naming SPEKO_API_URL (the runtime checks again, should a process skip these signals).
    Sending tasks (``celery -A worker call``) and the API need no dialer."""

    def check(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is app:
            require_dialer(app.settings)

    worker_init.connect(check, weak=False)
    beat_init.connect(check, weak=False)


def _serve_metrics(settings: Settings) -> None:
    def start(**_: Any) -> None:
        if settings.metrics_port is None:
            return
        registry = CollectorRegistry()
        if metrics.multiprocess_dir():
            # prefork: every child writes its samples to files there; sum them on scrape.
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        else:
            registry = REGISTRY
        # Its own small engine: the pool's children must never inherit this one.
        engine = make_engine(settings.effective_database_url, pool_size=1)
        registry.register(metrics.StateCollector(make_sessions(engine), SystemClock()))
        try:
            start_http_server(settings.metrics_port, registry=registry)
        except OSError as exc:  # metrics must never stop callbacks from being placed
            logging.getLogger(__name__).error(
                "metrics: cannot listen on port %s: %s", settings.metrics_port, exc
            )

    worker_init.connect(start, weak=False)


# Lines Celery writes at INFO for every task and every beat tick: with a poll a second,
# two to three lines a second that say nothing. Their failures are WARNING and above, so
# they still show; LOG_LEVEL=DEBUG shows everything.
ROUTINE_LOGGERS = ("celery.worker.strategy", "celery.app.trace", "celery.beat")


def _configure_logging(settings: Settings) -> None:
    def ours(**_: Any) -> None:
        # Having a receiver makes Celery leave logging to us: JSON or console per settings.
        configure_logging(settings)
        if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
            for name in ROUTINE_LOGGERS:
                logging.getLogger(name).setLevel(logging.WARNING)

    setup_logging.connect(ours, weak=False)
