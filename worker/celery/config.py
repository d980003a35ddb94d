"""The Celery configuration, with the reasons for each setting; and the bare app the admin
API uses to send messages (by task name: it needs the broker, not the worker's tasks)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from celery import Celery
from kombu import Exchange, Queue

from worker.celery.embedded_broker import POLLING_INTERVAL as EMBEDDED_POLLING_INTERVAL
from worker.celery.embedded_broker import TRANSPORT as EMBEDDED_TRANSPORT
from worker.celery.embedded_broker import create_folders
from worker.celery.embedded_broker import transport_options as embedded_broker_options
from worker.settings import Settings

POLL_QUEUE = "callbacks.poll"
DISPATCH_QUEUE = "callbacks.dispatch"
MANUAL_QUEUE = "callbacks.manual"
"""Operators' dispatches (the API's and ``callbacks.dispatch``): never behind the poller's."""
WEBHOOK_QUEUE = "callbacks.webhooks"
PLATFORM_EVENTS_SWEEP = 30.0
"""Seconds between sweeps for stored, unprocessed platform events."""
OUTCOME_PULL_INTERVAL = 60.0
"""Seconds between looks for calls whose outcome is due to be pulled (at most)."""


def pull_interval(settings: Settings) -> float:
    """A tenth of OUTCOME_PULL_AFTER, between 1 s and 60 s: a pull is late by at most
    a tenth of the wait it follows (short waits are for tests and demos)."""
    return max(1.0, min(OUTCOME_PULL_INTERVAL, settings.outcome_pull_after / 10))


def _broker_folder(settings: Settings) -> Path | None:
    """Where the embedded file-backed broker keeps its messages (``None``: not that one)."""
    if not settings.effective_broker_url.startswith("filesystem"):
        return None
    return (settings.data_dir / "broker").resolve()


def prepare_broker(settings: Settings) -> None:
    """Create the file-backed broker's folders, if that is the broker: when an app is
    built to be used, never when a module is imported."""
    folder = _broker_folder(settings)
    if folder is not None:
        create_folders(folder)


def publisher(settings: Settings) -> Celery:
    """A Celery app that only sends messages by task name: no tasks, no signals."""
    prepare_broker(settings)
    app = Celery("worker")
    app.config_from_object(celery_config(settings))
    return app


def celery_config(settings: Settings) -> dict[str, Any]:
    longest_dial = settings.dialer_connect_timeout + settings.dialer_read_timeout
    transport_options: dict[str, Any]
    embedded_broker: dict[str, Any] = {}
    folder = _broker_folder(settings)
    if folder is not None:
        transport_options = {
            **embedded_broker_options(folder),
            "polling_interval": EMBEDDED_POLLING_INTERVAL,
        }
        # kombu's own filesystem transport can hand a reader a half-written message
        # (worker.celery.embedded_broker): ours writes atomically and takes exactly once.
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
            # An operator's "dispatch now" has its own queue: kombu's Redis transport takes
            # from a worker's queues in turn (round robin), so it waits for the next free
            # thread, not behind the claimed backlog (the API sends its message there too).
            "callbacks.dispatch": {"queue": MANUAL_QUEUE},
            "callbacks.poll": {"queue": POLL_QUEUE},
            "callbacks.reap": {"queue": POLL_QUEUE},
            "callbacks.sweep_platform_events": {"queue": POLL_QUEUE},
            "callbacks.purge_platform_events": {"queue": POLL_QUEUE},
            "callbacks.pull_outcomes": {"queue": POLL_QUEUE},
            # Webhooks out have their own queue: a slow customer endpoint never sits in
            # front of a dial, and a dispatch backlog never delays a delivery.
            "callbacks.webhooks_sweep": {"queue": WEBHOOK_QUEUE},
            "callbacks.webhooks_deliver": {"queue": WEBHOOK_QUEUE},
            "callbacks.webhooks_purge": {"queue": WEBHOOK_QUEUE},
        },
        # The bare `celery -A worker worker` consumes all four.
        "task_queues": [
            _queue(DISPATCH_QUEUE),
            _queue(MANUAL_QUEUE),
            _queue(POLL_QUEUE),
            _queue(WEBHOOK_QUEUE),
        ],
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
            # Platform events stored but not processed (issue 14): a lost task is redone.
            "platform-events": {
                "task": "callbacks.sweep_platform_events",
                "schedule": PLATFORM_EVENTS_SWEEP,
                "options": {"expires": PLATFORM_EVENTS_SWEEP},
            },
            "platform-events-purge": {
                "task": "callbacks.purge_platform_events",
                "schedule": 3600.0,
                "options": {"expires": 3600.0},
            },
            # Calls with no outcome OUTCOME_PULL_AFTER after dispatch are read back.
            "pull-outcomes": {
                "task": "callbacks.pull_outcomes",
                "schedule": pull_interval(settings),
                "options": {"expires": pull_interval(settings)},
            },
            "webhooks-sweep": {
                "task": "callbacks.webhooks_sweep",
                "schedule": settings.webhook_sweep_interval,
                "options": {"expires": max(settings.webhook_sweep_interval * 5, 5.0)},
            },
            "webhooks-purge": {
                "task": "callbacks.webhooks_purge",
                "schedule": 3600.0,
                "options": {"expires": 3600.0},
            },
        },
        "timezone": "UTC",
        "enable_utc": True,
    }


def _queue(name: str) -> Queue:
    # Each queue its own exchange and key, so a route to one never lands in the other.
    return Queue(name, Exchange(name, type="direct"), routing_key=name)
