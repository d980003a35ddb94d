"""Claiming due callbacks: ``scheduled`` → ``dispatching``, atomically, safe in parallel.

On PostgreSQL one statement
(``WITH due AS MATERIALIZED (SELECT ... FOR UPDATE SKIP LOCKED) UPDATE ... FROM due``)
picks the due rows (``FOR UPDATE SKIP LOCKED``, so parallel
pollers take disjoint rows without waiting on each other) and updates them. SQLite has
one writer at a time, so the same statement is atomic there without the lock clause.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from worker.db.models import Callback
from worker.status import Status
from worker.transitions import bulk_transition, transition

POLLER = "poller"


def claim_due(
    session: Session, *, now: datetime, batch_size: int, lease: timedelta, actor: str = POLLER
) -> list[str]:
    """Claim up to ``batch_size`` callbacks due at ``now``, oldest first; return their ids."""
    due = (
        select(Callback.id)
        .where(Callback.status == Status.SCHEDULED, Callback.due_at <= now)
        .order_by(Callback.due_at)
        .limit(batch_size)
        .with_for_update(skip_locked=True)
        # MATERIALIZED: the pick runs exactly once. As `id IN (subquery)` or a plain
        # FROM-subquery, PostgreSQL may rescan it per row, SKIP LOCKED then skips the rows
        # this statement already took, and LIMIT stops limiting (test_claims caught a
        # batch of 2 claiming 5).
        .cte("due")
        .prefix_with("MATERIALIZED")
    )
    return bulk_transition(
        session,
        expected=Status.SCHEDULED,
        target=Status.DISPATCHING,
        now=now,
        actor=actor,
        guards=[Callback.id == due.c.id],
        detail={"via": "poll"},
        values={"lease_expires_at": now + lease, "attempt_in_flight": False},
    )


def claim_now(
    session: Session,
    callback_id: str,
    *,
    now: datetime,
    lease: timedelta,
    actor: str,
    expires_at: datetime | None,
) -> Callback | None:
    """Claim one ``scheduled`` callback whatever its ``due_at`` (manual dispatch).

    An operator asked for it now, so its expiry restarts from now.
    """
    return transition(
        session,
        callback_id,
        expected=Status.SCHEDULED,
        target=Status.DISPATCHING,
        now=now,
        actor=actor,
        detail={"via": "manual"},
        values={
            "lease_expires_at": now + lease,
            "attempt_in_flight": False,
            "expires_at": expires_at,
        },
    )
