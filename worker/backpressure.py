"""Backpressure between the claim and the workers: claim only what they will start soon.

A claimed callback waits in the broker's dispatch queue, first in first out, until a
worker starts its attempt. Claiming a whole backlog at once made that queue as deep as
the backlog, so another organization's callback, fairly claimed, still waited behind all
of it (issue 13: 11.4 s behind 20,000). The poller now keeps the claims not yet started
(``dispatching``, no attempt in flight) under a **window**; the queue is then never longer
than the window, and the order in which callbacks are dialed is the claim's fair order.

A claim counts against the window only while it is recent (``stale``): a claim whose
message was lost (Redis lost it, its worker died before starting it) would otherwise hold
its room until the reaper releases it after ``CLAIM_LEASE``, and a window full of lost
claims would stop every claim for that long. Past ``stale`` it is presumed lost for the
window's purposes; the reaper still resolves it, exactly as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, String, and_, func, literal_column, select
from sqlalchemy.orm import Session

from worker.db.models import Callback
from worker.status import Status


@dataclass(frozen=True)
class ClaimWindow:
    size: int
    """Claims not yet started allowed at once (across every poller and worker)."""
    stale: timedelta = timedelta(seconds=30)
    """A claim not started after this long no longer counts (presumed lost)."""
    top_up: int = 1
    """The least room a top-up (a worker's refill) claims for: a full dispatch message,
    so refills never split the queue into messages of one or two callbacks."""


def _unstarted() -> ColumnElement[bool]:
    # The status as a literal, not a bound parameter: only then can PostgreSQL prove the
    # partial index's predicate (status = 'dispatching') for a plan that must hold for any
    # value, the generic plan the claim's transaction forces (worker.claims). With a
    # parameter, that count read the whole table: 18 ms a claim at 100,000 rows (tests/perf).
    dispatching = literal_column(f"'{Status.DISPATCHING.value}'", String)
    return and_(Callback.status == dispatching, Callback.attempt_in_flight.is_(False))


def waiting(session: Session, *, now: datetime, stale: timedelta) -> int:
    """Claims not started, made within ``stale`` of ``now`` (read through the partial
    index on ``dispatching`` rows: cost follows the window, not the table)."""
    query = select(func.count()).where(_unstarted(), Callback.claimed_at > now - stale)
    return int(session.scalar(query) or 0)


def room(session: Session, window: ClaimWindow, *, now: datetime) -> int:
    """How many more callbacks may be claimed now without overfilling the window."""
    return max(0, window.size - waiting(session, now=now, stale=window.stale))


@dataclass(frozen=True)
class Unstarted:
    count: int
    oldest_claimed_at: datetime | None


def unstarted(session: Session) -> Unstarted:
    """Every claim not yet started (stale ones too: what an operator wants to see)."""
    count, oldest = session.execute(
        select(func.count(), func.min(Callback.claimed_at)).where(_unstarted())
    ).one()
    return Unstarted(int(count), _aware(oldest))


def claim_waits(session: Session, *, since: datetime) -> list[float]:
    """Seconds between claim and attempt start of the attempts started since ``since``,
    sorted (first attempts and re-attempts alike: each waited for a worker)."""
    rows = session.execute(
        select(Callback.claimed_at, Callback.attempted_at).where(
            Callback.attempted_at >= since, Callback.claimed_at.is_not(None)
        )
    ).all()
    waits = [
        (_aware(started) - _aware(claimed)).total_seconds()  # type: ignore[operator]
        for claimed, started in rows
        if claimed is not None and started is not None and started >= claimed
    ]
    return sorted(waits)


def percentile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of sorted ``values``, nearest rank; ``None`` if empty."""
    if not values:
        return None
    rank = max(0, min(len(values) - 1, round(q * len(values) + 0.5) - 1))
    return values[rank]


def _aware(value: datetime | str | None) -> datetime | None:
    # SQLite aggregates lose the column type (min() of a UTC column comes back as text).
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return value
