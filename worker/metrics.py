"""Prometheus metrics: what to alert on (names are part of the operations contract).

Counters and histograms are updated where things happen; the backlog and the provider
hold are read from the database when scraped (:class:`StateCollector`), from the partial
due index, never a table scan.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Protocol

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from worker.backpressure import unstarted
from worker.clock import Clock
from worker.db.models import Callback
from worker.pacing.holds import PROVIDER, active_hold
from worker.status import Status
from worker.webhooks.health import pending_by_endpoint

log = logging.getLogger(__name__)

CLAIMED = Counter("callbacks_claimed", "Callbacks claimed by the poller")
OUTCOMES = Counter(
    "callbacks_dispatch_outcomes",
    "Dispatch results: dispatched, retried, held, expired, skipped, failed_<class>",
    ["outcome"],
)
DIAL_SECONDS = Histogram(
    "callbacks_dial_duration_seconds",
    "Time the provider took to answer one dial",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30),
)
LAG_SECONDS = Histogram(
    "callbacks_dispatch_lag_seconds",
    "attempted_at - due time, at each attempt start",
    buckets=(0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600),
)
CLAIM_WAIT_SECONDS = Histogram(
    "callbacks_claim_wait_seconds",
    "attempted_at - claimed_at, at each attempt start: the wait in the dispatch queue",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
REAPER_ACTIONS = Counter("callbacks_reaper_actions", "Reaper resolutions", ["action"])
PROVIDER_ERRORS = Counter(
    "callbacks_provider_errors", "Provider answers that were not a placed call", ["status_class"]
)


class _Claimed(Protocol):
    @property
    def claimed_at(self) -> datetime | None: ...


def observe_claim_waits(started: Iterable[_Claimed], now: datetime) -> None:
    """The wait between claim and attempt start of each attempt just started."""
    for callback in started:
        if callback.claimed_at is not None:
            CLAIM_WAIT_SECONDS.observe(max(0.0, (now - callback.claimed_at).total_seconds()))


def status_class(http_status: int | None) -> str:
    return "none" if http_status is None else f"{http_status // 100}xx"


class StateCollector(Collector):
    """Due backlog, oldest due age and the provider hold, read at scrape time."""

    def __init__(self, sessions: sessionmaker[Session], clock: Clock) -> None:
        self.sessions = sessions
        self.clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = self.clock.now()
        try:
            with self.sessions() as session:
                backlog, oldest = backlog_of(session, now)
                waiting = unstarted(session)
                held = active_hold(session, PROVIDER, now) is not None
        except Exception:  # a scrape must not fail because the database is away
            log.exception("metrics: could not read the backlog")
            return
        yield GaugeMetricFamily("callbacks_due_backlog", "Scheduled callbacks now due", backlog)
        age = 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())
        yield GaugeMetricFamily(
            "callbacks_oldest_due_age_seconds", "How long the oldest due callback has waited", age
        )
        yield GaugeMetricFamily(
            "callbacks_claimed_not_started",
            "Claimed callbacks whose attempt has not started: the queue the workers have "
            "not reached",
            waiting.count,
        )
        yield GaugeMetricFamily(
            "callbacks_claimed_oldest_wait_seconds",
            "How long the oldest claimed, not started callback has waited for a worker",
            0.0
            if waiting.oldest_claimed_at is None
            else max(0.0, (now - waiting.oldest_claimed_at).total_seconds()),
        )
        yield GaugeMetricFamily(
            "callbacks_provider_key_rejected",
            "1 while dialing is held because the provider rejected our API key",
            1.0 if held else 0.0,
        )
        yield from _webhook_gauges(self.sessions, now)


def _webhook_gauges(sessions: sessionmaker[Session], now: datetime) -> Iterator[GaugeMetricFamily]:
    try:
        with sessions() as session:
            pending = pending_by_endpoint(session, now)
    except Exception:  # a scrape must not fail because the database is away
        log.exception("metrics: could not read the webhook deliveries")
        return
    count = GaugeMetricFamily(
        "callbacks_webhook_pending", "Webhook deliveries pending, per endpoint", labels=["endpoint"]
    )
    age = GaugeMetricFamily(
        "callbacks_webhook_oldest_pending_age_seconds",
        "Age of the oldest pending webhook delivery, per endpoint",
        labels=["endpoint"],
    )
    for endpoint_id, (n, seconds) in pending.items():
        count.add_metric([endpoint_id], n)
        age.add_metric([endpoint_id], seconds)
    yield count
    yield age


def backlog_of(session: Session, now: datetime) -> tuple[int, datetime | None]:
    """Count and oldest ``due_at`` of due scheduled rows (served by ix_callbacks_due)."""
    count, oldest = session.execute(
        select(func.count(), func.min(Callback.due_at)).where(
            Callback.status == Status.SCHEDULED, Callback.due_at <= now
        )
    ).one()
    if isinstance(oldest, str):  # SQLite aggregates lose the column type
        oldest = datetime.fromisoformat(oldest).replace(tzinfo=now.tzinfo)
    return int(count), oldest


def multiprocess_dir() -> str | None:
    """Set PROMETHEUS_MULTIPROC_DIR for a prefork pool so children's samples are summed."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")
