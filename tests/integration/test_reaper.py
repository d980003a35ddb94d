"""The reaper: rows just before and after each cutoff, in flight, finished, cancelled."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import pytest
from freezegun import freeze_time
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.support.factories import T0, make_callback
from tests.support.history import events
from worker.clock import SystemClock
from worker.db.models import Callback, CallbackEvent
from worker.policy import DispatchPolicy
from worker.reaper import Reaped, reap
from worker.retry import RetryPolicy
from worker.status import Status

US = timedelta(microseconds=1)
FAIL = DispatchPolicy(retry=RetryPolicy(max_attempts=3))
REDIAL = DispatchPolicy(retry=RetryPolicy(max_attempts=3), redial_unknown=True)


class Published:
    def __init__(self) -> None:
        self.ids: list[str] = []

    def __call__(self, ids: Sequence[str]) -> None:
        self.ids.extend(ids)


def _row(sessions: sessionmaker[Session], cid: str) -> Callback:
    with sessions() as s:
        return s.get_one(Callback, cid)


def _reap(
    sessions: sessionmaker[Session], policy: DispatchPolicy = FAIL
) -> tuple[Published, Reaped]:
    published = Published()
    return published, reap(sessions, SystemClock(), published, policy)


def test_claim_never_started_goes_back_to_due_only_once_its_lease_ran_out(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as s:
        expiring = make_callback(s, Status.DISPATCHING, lease_expires_at=T0).id
        live = make_callback(s, Status.DISPATCHING, lease_expires_at=T0 + US).id
    with freeze_time(T0):
        _, result = _reap(sessions)
    assert result.requeued == [expiring]
    row = _row(sessions, expiring)
    assert (row.status, row.lease_expires_at, row.attempts) == (Status.SCHEDULED, None, 0)
    assert row.due_at <= T0, "still due: the poller claims it again right away"
    assert _row(sessions, live).status is Status.DISPATCHING


def test_attempt_of_unknown_outcome_fails_by_default_never_redialed(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as s:
        dead = make_callback(
            s, Status.DISPATCHING, attempts=2, attempt_in_flight=True, lease_expires_at=T0
        ).id
        alive = make_callback(
            s, Status.DISPATCHING, attempts=1, attempt_in_flight=True, lease_expires_at=T0 + US
        ).id
    with freeze_time(T0):
        published, result = _reap(sessions)
    assert result.failed_unknown == [dead]
    assert published.ids == []
    row = _row(sessions, dead)
    assert row.status is Status.FAILED
    assert row.failure_cause is not None
    assert row.failure_cause.startswith("outcome unknown: attempt 2 started but never reported")
    assert "not dialed again" in row.failure_cause
    assert _row(sessions, alive).status is Status.DISPATCHING
    event = events(sessions, dead)[-1]
    assert (event.actor, event.from_status, event.to_status) == ("reaper", "dispatching", "failed")


def test_redial_policy_hands_the_same_attempt_back_with_the_same_key(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as s:
        cid = make_callback(
            s, Status.DISPATCHING, attempts=1, attempt_in_flight=True, lease_expires_at=T0
        ).id
        at_max = make_callback(
            s, Status.DISPATCHING, attempts=3, attempt_in_flight=True, lease_expires_at=T0
        ).id
    with freeze_time(T0):
        published, result = _reap(sessions, REDIAL)
    assert published.ids == [cid]
    assert result.failed_unknown == [at_max], "no attempts left: fail, not redial"
    row = _row(sessions, cid)
    assert (row.status, row.attempt_in_flight, row.dispatch_round) == (
        Status.DISPATCHING,
        False,
        1,
    )
    assert row.idempotency_key == f"{cid}.1"


@pytest.mark.parametrize(
    "status", [Status.SCHEDULED, Status.DISPATCHED, Status.CANCELLED, Status.FAILED]
)
def test_rows_not_dispatching_are_left_alone_even_with_an_old_lease(
    sessions: sessionmaker[Session], status: Status
) -> None:
    with sessions.begin() as s:
        cid = make_callback(s, status, lease_expires_at=T0 - timedelta(days=1)).id
    with freeze_time(T0):
        _, result = _reap(sessions)
    assert vars(result) == {"requeued": [], "failed_unknown": [], "redialed": []}
    assert _row(sessions, cid).status is status


def test_two_reapers_resolve_each_row_once(pg_sessions: sessionmaker[Session]) -> None:
    import threading

    with pg_sessions.begin() as s:
        ids = [
            make_callback(
                s, Status.DISPATCHING, attempts=1, attempt_in_flight=True, lease_expires_at=T0
            ).id
            for _ in range(50)
        ]
    results: list[Reaped] = []
    barrier = threading.Barrier(3)

    def run() -> None:
        barrier.wait()
        results.append(_reap(pg_sessions)[1])

    with freeze_time(T0 + timedelta(seconds=1)):
        threads = [threading.Thread(target=run) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    failed = [cid for r in results for cid in r.failed_unknown]
    assert sorted(failed) == sorted(ids)
    with pg_sessions() as s:
        events = s.scalars(
            select(CallbackEvent.callback_id).where(CallbackEvent.to_status == Status.FAILED)
        ).all()
    assert sorted(events) == sorted(ids), "one failed event per row"
