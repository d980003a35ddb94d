"""The API's two uses of the broker: send a dispatch message, and check it is reachable.

The Celery app they take needs only the broker (:func:`worker.celery.config.publisher`),
not the worker's tasks."""

from __future__ import annotations

from collections.abc import Callable

from celery import Celery

from worker.actions import Publish

DISPATCH_CLAIMED = "callbacks.dispatch_claimed"
"""The worker's task for a callback already moved to ``dispatching``."""

Probe = Callable[[], None]
"""Returns if the dependency answers, raises otherwise."""


def celery_publisher(app: Celery) -> Publish:
    def publish(callback_id: str) -> None:
        # By name: the API process needs the broker, not the task's code. A list of one,
        # the same shape as the poller's batches.
        app.send_task(DISPATCH_CLAIMED, args=([callback_id],))

    return publish


def celery_probe(app: Celery, *, timeout: int = 2) -> Probe:
    def probe() -> None:
        # One try, bounded: a readiness check must answer fast, not wait out retries.
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=timeout)

    return probe
