"""Removing processed platform events once they are older than the retention.

Only processed events go: an unprocessed one is work still to do, whatever its age.
Each batch is its own short transaction that deletes rows by primary key; rows another
transaction holds (a redelivered processing task) are skipped, not waited for, so the
purge never blocks the receiver's inserts nor the worker's processing.

What a removed event no longer guards: a delivery of the same ``webhook-id`` arriving
after the retention is stored and processed again. That changes nothing the callbacks
hold (one callback per source session; an outcome recorded once), so the retention only
bounds how long the record stays readable for an operator.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from worker.clock import Clock
from worker.db.models import PlatformEvent

PURGE_BATCH = 1_000
"""Rows per transaction: a few milliseconds of row locks, never a long one."""


def purge_processed(
    sessions: sessionmaker[Session],
    clock: Clock,
    *,
    retention: timedelta,
    batch: int = PURGE_BATCH,
    max_batches: int = 50,
) -> int:
    """Remove processed events whose ``processed_at`` is older than ``retention``, at most
    ``batch`` per transaction and ``max_batches`` per run (the next run, an hour later,
    goes on); return how many were removed."""
    cutoff = clock.now() - retention
    removed = 0
    for _ in range(max_batches):
        with sessions.begin() as session:
            ids = session.scalars(
                select(PlatformEvent.id)
                .where(PlatformEvent.processed_at.is_not(None), PlatformEvent.processed_at < cutoff)
                .order_by(PlatformEvent.processed_at)
                .limit(batch)
                .with_for_update(skip_locked=True)
            ).all()
            if not ids:
                break
            session.execute(delete(PlatformEvent).where(PlatformEvent.id.in_(ids)))
            removed += len(ids)
        if len(ids) < batch:
            break
    return removed
