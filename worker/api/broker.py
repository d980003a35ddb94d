"""The API's two uses of the broker: send a dispatch message, and check it is reachable.

The Celery app they take needs only the broker (:func:`worker.celery.config.publisher`),
not the worker's tasks."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

from celery import Celery

from worker.actions import Publish
from worker.celery.config import MANUAL_QUEUE

DISPATCH_CLAIMED = "callbacks.dispatch_claimed"
"""The worker's task for a callback already moved to ``dispatching``."""

Probe = Callable[[], None]
"""Returns if the dependency answers, raises otherwise."""


def celery_publisher(app: Celery) -> Publish:
    def publish(callback_id: str) -> None:
        # By name: the API process needs the broker, not the task's code. A list of one,
        # the same shape as the poller's batches.
        # On the operators' queue: not behind the poller's claimed backlog.
        app.send_task(DISPATCH_CLAIMED, args=([callback_id],), queue=MANUAL_QUEUE)

    return publish


def celery_probe(app: Celery, *, timeout: int = 2) -> KeptBrokerProbe:
    return KeptBrokerProbe(app, timeout=timeout)


class KeptBrokerProbe:
    """Checks the broker over one connection kept between calls (a new connection per
    readiness check cost a TCP and Redis handshake each time).

    An open connection proves nothing by itself, so each check makes one round trip
    (``PING`` on Redis); on any failure the connection is dropped and the next check
    connects afresh. One try, bounded: a readiness check must answer fast.
    """

    def __init__(self, app: Celery, *, timeout: int = 2) -> None:
        self.app = app
        self.timeout = timeout
        self.lock = threading.Lock()
        self.conn: Any = None

    def __call__(self) -> None:
        with self.lock:
            try:
                if self.conn is None:
                    self.conn = self.app.connection_for_write(
                        transport_options={
                            "socket_timeout": self.timeout,
                            "socket_connect_timeout": self.timeout,
                        }
                    )
                self.conn.ensure_connection(max_retries=1, interval_start=0, timeout=self.timeout)
                client = getattr(self.conn.default_channel, "client", None)
                if client is not None and hasattr(client, "ping"):
                    client.ping()
            except Exception:
                self._drop()
                raise

    def _drop(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            # It is being discarded because it failed; closing it may fail too.
            with contextlib.suppress(Exception):
                conn.release()

    def close(self) -> None:
        with self.lock:
            self._drop()
