"""Claiming due callbacks: ``scheduled`` → ``dispatching``, atomically, safe in parallel.

On PostgreSQL one statement
(``WITH due AS MATERIALIZED (SELECT ... FOR UPDATE SKIP LOCKED) UPDATE ... FROM due``)
picks the due rows fairly across organizations and within their caps
(:mod:`worker.pacing.fairness`) and updates them; claims take turns on an advisory lock so a
cap is never filled twice. SQLite has one writer at a time, so the same statement is
atomic there without the lock clause.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ARRAY, ColumnElement, String, any_, cast, func, select
from sqlalchemy.orm import Session

from worker import lifecycle
from worker.backpressure import ClaimWindow, room
from worker.pacing.fairness import fair_pick
from worker.pacing.limits import Pacing, charge

POLLER = "poller"


CLAIM_LOCK = 0x63616C6C  # pg_advisory_xact_lock key serialising claims ("call")


def claim_due(
    session: Session,
    *,
    now: datetime,
    batch_size: int,
    lease: timedelta,
    actor: str = POLLER,
    pacing: Pacing | None = None,
    window: ClaimWindow | None = None,
    least: int = 1,
    wait: bool = True,
) -> list[str]:
    """Claim up to ``batch_size`` callbacks due at ``now``, fairly across organizations
    and within their caps (:mod:`worker.pacing.fairness`); return their ids.

    Without ``pacing`` nothing is capped (still round-robin across organizations). With a
    ``window`` (:mod:`worker.backpressure`), no more than its room, and nothing if the
    room is under ``least``. ``wait=False``: claim nothing if another claim is under way.
    """
    pacing = pacing or Pacing()
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        # Caps count what is already `dispatching`; two claims reading that count at once
        # could both fill the same room. A transaction-level lock makes claims take turns
        # (each lasts milliseconds), and this statement runs before the claim's, so the
        # claim's snapshot sees every earlier claim committed.
        # In the same round trip: plan the pick once, not per poll. Its shape is fixed by
        # the SQL (a skip-scan and per-organization LIMITs), so a generic plan loses
        # nothing, while the custom plans PostgreSQL kept choosing on a large table cost
        # ~0.7 ms of planning per poll, most of an empty poll's time (tests/perf).
        # A top-up (``wait=False``) only tries the lock: a worker thread waiting its turn
        # behind other claims is a thread not dialing (16 of them queued on it at a large
        # backlog), and whoever holds the lock fills the same room anyway.
        lock = func.pg_advisory_xact_lock if wait else func.pg_try_advisory_xact_lock
        got = session.execute(
            select(
                lock(CLAIM_LOCK),
                func.set_config("plan_cache_mode", "force_generic_plan", True),
            )
        ).one()[0]
        if got is False:
            return []
        # JIT is off for our connections (worker.db.engine): the pick's cost estimate
        # tripped it, ~1 s of compiling for a statement that runs in milliseconds.
    if window is not None:
        # Counted after the lock, so concurrent pollers (beats, workers topping up) see
        # each other's committed claims and never fill the same room twice. On SQLite
        # one writer at a time does the same for the one beat of the embedded mode.
        free = room(session, window, now=now)
        if free < max(1, least):
            return []
        batch_size = min(batch_size, free)
    due = (
        fair_pick(dialect, now=now, batch=batch_size, pacing=pacing)
        # MATERIALIZED: the pick runs exactly once. As `id IN (subquery)` or a plain
        # FROM-subquery, PostgreSQL may rescan it per row, SKIP LOCKED then skips the rows
        # this statement already took, and LIMIT stops limiting (test_claims caught a
        # batch of 2 claiming 5).
        .cte("due")
        .prefix_with("MATERIALIZED")
    )
    # On PostgreSQL the claimed rows are named as `id = ANY(ARRAY(SELECT id FROM due))`,
    # not `FROM due WHERE id = due.id`: the generic plan guessed thousands of rows for the
    # pick and hashed the whole table to join them (a sequential scan per claim, ~60 ms at
    # 100,000 rows, worker.pacing.fairness); an array of ids is a primary-key lookup each.
    picked: ColumnElement[Any] = (
        # The CAST makes it the array form of ANY, not the subquery form.
        any_(cast(select(func.array_agg(due.c.id)).scalar_subquery(), ARRAY(String)))
        if dialect == "postgresql"
        else due.c.id
    )
    moved = lifecycle.claim_due(session, picked, now=now, lease=lease, actor=actor)
    charge(session, Counter(m.organization_id for m in moved), now=now, pacing=pacing)
    return [m.id for m in moved]
