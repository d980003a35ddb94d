"""The Celery app factory: broker, queues, schedule and the reasons for each setting."""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import Celery
from celery.signals import beat_init, setup_logging, worker_init
from kombu import Exchange, Queue
from prometheus_client import REGISTRY, CollectorRegistry, multiprocess, start_http_server

from worker import metrics
from worker.clock import SystemClock
from worker.db.engine import make_engine, make_sessions
from worker.embedded_broker import POLLING_INTERVAL as EMBEDDED_POLLING_INTERVAL
from worker.embedded_broker import TRANSPORT as EMBEDDED_TRANSPORT
from worker.embedded_broker import transport_options as embedded_broker_options
from worker.logs import configure_logging
from worker.runtime import Runtime, build_runtime, require_dialer
from worker.settings import Settings

POLL_QUEUE = "callbacks.poll"
DISPATCH_QUEUE = "callbacks.dispatch"


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


def celery_config(settings: Settings) -> dict[str, Any]:
    longest_dial = settings.dialer_connect_timeout + settings.dialer_read_timeout
    transport_options: dict[str, Any]
    embedded_broker: dict[str, Any] = {}
    if settings.effective_broker_url.startswith("filesystem"):
        transport_options = {
            **embedded_broker_options(settings.data_dir / "broker"),
            "polling_interval": EMBEDDED_POLLING_INTERVAL,
        }
        # kombu's own filesystem transport can hand a reader a half-written message
        # (worker.embedded_broker): ours writes atomically and takes exactly once.
        embedded_broker = {
            "broker_transport": EMBEDDED_TRANSPORT,
            # One local worker: no remote-control (pidbox) queue left behind in the folder.
            "worker_enable_remote_control": False,
        }
    else:
        # Redis redelivers an unacked message after this long: far above the longest task,
        # so a slow dial is never handed to a second worker while it still runs.
        transport_options = {
            "visibility_timeout": 3600,
            # A broker that drops packets must fail a publish fast (the API answers 503),
            # not hang it.
            "socket_connect_timeout": 5,
            "socket_timeout": 10,
        }
    return {
        **embedded_broker,
        "broker_url": settings.effective_broker_url,
        "broker_transport_options": transport_options,
        # Keep retrying the broker at start-up instead of crashing a fresh deploy.
        "broker_connection_retry_on_startup": True,
        # Publishing retries briefly; the database, not the broker, is the source of truth.
        "task_publish_retry": True,
        "task_publish_retry_policy": {
            "max_retries": 3,
            "interval_start": 0.2,
            "interval_step": 0.5,
        },
        # JSON only, never pickle: a message can then carry no code to run, which is also
        # what lets Celery run as root where it must (`callbacks run` in a container).
        "accept_content": ["json"],
        "task_serializer": "json",
        # Nothing reads task results: the callback row holds the outcome.
        "task_ignore_result": True,
        # Ack after the task ran, and requeue if the worker process died: a redelivered
        # message is harmless (the attempt compare-and-set dials at most once) and gets a
        # never-started claim going again without waiting for the lease.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # One message per free slot: a slow dial must not sit on messages others could run.
        "worker_prefetch_multiplier": 1,
        # Time limits well above the dialer's own timeouts: they only catch real hangs.
        "task_soft_time_limit": longest_dial + 30,
        "task_time_limit": longest_dial + 60,
        "worker_pool": settings.worker_pool,
        "worker_concurrency": settings.effective_concurrency,
        # Polls have their own queue so a dispatch backlog never delays the next claim.
        "task_default_queue": DISPATCH_QUEUE,
        "task_routes": {
            "callbacks.poll": {"queue": POLL_QUEUE},
            "callbacks.reap": {"queue": POLL_QUEUE},
        },
        # The bare `celery -A worker worker` consumes both.
        "task_queues": [_queue(DISPATCH_QUEUE), _queue(POLL_QUEUE)],
        # Beat keeps its schedule in memory: the schedule is fixed intervals, and several
        # beats may run (claims are atomic), so no shared schedule file to fight over.
        "beat_scheduler": "celery.beat:Scheduler",
        "beat_schedule": {
            "poll": {
                "task": "callbacks.poll",
                "schedule": settings.poll_interval,
                # A poll that waited this long is stale; the next tick will do its work.
                "options": {"expires": max(settings.poll_interval * 5, 5.0)},
            },
            "reap": {
                "task": "callbacks.reap",
                "schedule": settings.reaper_interval,
                "options": {"expires": settings.reaper_interval},
            },
        },
        "timezone": "UTC",
        "enable_utc": True,
    }


def _queue(name: str) -> Queue:
    # Each queue its own exchange and key, so a route to one never lands in the other.
    return Queue(name, Exchange(name, type="direct"), routing_key=name)


def create_celery(settings: Settings) -> CallbacksCelery:
    from worker import tasks

    app = CallbacksCelery(settings)
    app.config_from_object(celery_config(settings))
    tasks.register(app)
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
