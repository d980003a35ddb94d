"""The claim: due exactly at ``due_at``, oldest first, never twice — also under contention."""

from __future__ import annotations

import multiprocessing
import time
from datetime import timedelta

from freezegun import freeze_time
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.support.factories import T0, make_callback
from worker.claims import claim_due
from worker.creation import schedule
from worker.db.engine import make_engine, make_sessions
from worker.db.models import Callback, CallbackEvent
from worker.status import Status
from worker.validation import NewCallback

LEASE = timedelta(minutes=5)
US = timedelta(microseconds=1)


def _claim(sessions: sessionmaker[Session], batch: int = 100) -> list[str]:
    from worker.clock import SystemClock

    with sessions.begin() as s:
        return claim_due(s, now=SystemClock().now(), batch_size=batch, lease=LEASE)


def test_not_due_a_microsecond_before_scheduled_at_and_due_at_it(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as s:
        cb = make_callback(s, scheduled_at=T0)
    with freeze_time(T0 - US):
        assert _claim(sessions) == []
    with freeze_time(T0):
        assert _claim(sessions) == [cb.id]
    with sessions() as s:
        row = s.get_one(Callback, cb.id)
        assert row.status is Status.DISPATCHING
        assert row.lease_expires_at == T0 + LEASE
        assert row.attempt_in_flight is False
        event = s.scalars(
            select(CallbackEvent).where(CallbackEvent.to_status == "dispatching")
        ).one()
        assert (event.from_status, event.actor, event.at) == ("scheduled", "poller", T0)


def test_claims_oldest_first_in_batches_and_only_scheduled_rows(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as s:
        ids = [make_callback(s, scheduled_at=T0 - timedelta(minutes=m)).id for m in range(5)]
        for status in (Status.DISPATCHING, Status.DISPATCHED, Status.CANCELLED, Status.FAILED):
            make_callback(s, status, scheduled_at=T0 - timedelta(hours=1))
        make_callback(s, scheduled_at=T0 + timedelta(seconds=1))
    with freeze_time(T0):
        first = _claim(sessions, batch=2)
        rest = _claim(sessions, batch=10)
        assert _claim(sessions) == []
    assert sorted(first) == sorted([ids[4], ids[3]])
    assert sorted(rest) == sorted(ids[:3])


def test_retry_wait_moves_due_at_but_never_scheduled_at(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        cb = make_callback(s, scheduled_at=T0, due_at=T0 + timedelta(minutes=1))
    with freeze_time(T0 + timedelta(seconds=59)):
        assert _claim(sessions) == []
    with freeze_time(T0 + timedelta(minutes=1)):
        assert _claim(sessions) == [cb.id]


def _claimer(url: str, start_at: float) -> list[str]:
    engine = make_engine(url, pool_size=1)
    sessions = make_sessions(engine)
    while time.time() < start_at:  # line the processes up so they really race
        time.sleep(0.001)
    mine: list[str] = []
    while batch := _claim(sessions, batch=100):
        mine.extend(batch)
    engine.dispose()
    return mine


def test_parallel_processes_claim_every_row_exactly_once(
    pg_sessions: sessionmaker[Session], pg_url: str
) -> None:
    rows, processes = 10_000, 4
    new = [
        NewCallback(organization_id=f"org_{i % 7}", to_number="+12015551234", scheduled_at=T0)
        for i in range(rows)
    ]
    with pg_sessions.begin() as s:
        schedule(s, new, now=T0, actor="test")
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(processes) as pool:
        start_at = time.time() + 2.0
        began = time.perf_counter()
        results = pool.starmap(_claimer, [(pg_url, start_at)] * processes)
        elapsed = time.perf_counter() - began - 2.0
    claimed = [cid for r in results for cid in r]
    assert len(claimed) == rows
    assert len(set(claimed)) == rows
    assert all(len(r) > 0 for r in results), "every process should have won some rows"
    with pg_sessions() as s:
        by_status = dict(
            s.execute(select(Callback.status, func.count()).group_by(Callback.status)).all()
        )
        events = s.scalar(select(func.count()).where(CallbackEvent.to_status == Status.DISPATCHING))
    assert by_status == {"dispatching": rows}
    assert events == rows
    print(
        f"\ncontention: {rows} rows, {processes} processes, per process "
        f"{[len(r) for r in results]}, ~{elapsed:.2f}s"
    )
