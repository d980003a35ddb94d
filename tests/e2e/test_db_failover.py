"""The database server goes away under a dispatch: a private PostgreSQL cluster (this test
session's own, tests/e2e/conftest.py) is stopped and started again at each step.

| step                                     | test                                             |
|------------------------------------------|--------------------------------------------------|
| a claimed batch's start (issue 17 item 1) | test_a_batch_whose_start_meets_a_stopped_...     |
| a placed call's outcome write (item 2)    | test_a_placed_calls_outcome_is_kept_...          |
| the lease ends first (item 2, reaper)     | test_the_worker_knocks_until_its_lease_...       |

The waits between knocks are the test's own ``sleep``: it starts the server again (or
moves the clock), so nothing here waits for time to pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from tests.e2e.conftest import OwnDatabase
from tests.support.factories import make_callback
from tests.support.faults import PrivateCluster
from worker.db.models import Callback
from worker.db.retry import unavailable, while_unavailable
from worker.dialer.log import LogDialer
from worker.dialer.port import DialOutcome, DialRequest
from worker.dispatch import Dispatcher, dispatch_many
from worker.outcomes import Result
from worker.policy import DispatchPolicy
from worker.reaper import reap
from worker.status import Status

pytestmark = pytest.mark.e2e


@dataclass
class MovableClock:
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def now(self) -> datetime:
        return self.at


@dataclass
class RestartOnKnock:
    """The dispatcher's ``sleep``: counts the knocks and starts the server every n-th."""

    cluster: PrivateCluster
    after: int = 3
    knocks: list[float] = field(default_factory=list)

    def __call__(self, seconds: float) -> None:
        self.knocks.append(seconds)
        if len(self.knocks) % self.after == 0:
            self.cluster.start()


class StopsTheServerWhileDialing:
    """A dialer that places the call while the database server goes down under it."""

    def __init__(self, cluster: PrivateCluster) -> None:
        self.cluster = cluster
        self.placed = LogDialer()

    def dial(self, request: DialRequest) -> DialOutcome:
        self.cluster.stop()
        return self.placed.dial(request)

    def close(self) -> None:
        return None


def _claimed(sessions: sessionmaker[Session], n: int) -> list[str]:
    now = datetime.now(UTC)
    with sessions.begin() as s:
        return [
            make_callback(
                s,
                Status.DISPATCHING,
                to=f"+1201555{i:04d}",
                scheduled_at=now - timedelta(seconds=5),
                lease_expires_at=now + timedelta(minutes=5),
            ).id
            for i in range(n)
        ]


def _rows(sessions: sessionmaker[Session], ids: list[str]) -> dict[str, Callback]:
    with sessions() as s:
        return {c.id: c for c in s.query(Callback).filter(Callback.id.in_(ids))}


def test_a_batch_whose_start_meets_a_stopped_database_starts_when_it_is_back(
    own_db: OwnDatabase, own_sessions: sessionmaker[Session]
) -> None:
    """Item 1: the start is held and retried with backoff (not raised, so not acked and
    left to CLAIM_LEASE); once the server answers, every callback is dialed once."""
    ids = _claimed(own_sessions, 5)
    knock = RestartOnKnock(own_db.cluster, after=4)
    dialer = LogDialer()
    d = Dispatcher(own_sessions, MovableClock(), dialer, DispatchPolicy(), sleep=knock)
    own_db.cluster.stop()

    results = dispatch_many(d, ids)

    assert results == dict.fromkeys(ids, Result.DISPATCHED)
    assert len(knock.knocks) == 4, "it knocked until the server was back, then went on"
    assert knock.knocks == sorted(knock.knocks), "backoff grows"
    assert max(knock.knocks) <= 1.0, "capped: work resumes within a second of recovery"
    assert sorted(r.callback_id for r in dialer.placed) == sorted(ids)
    assert {c.status for c in _rows(own_sessions, ids).values()} == {Status.DISPATCHED}


def test_a_placed_calls_outcome_is_kept_and_written_when_the_database_returns(
    own_db: OwnDatabase, own_sessions: sessionmaker[Session]
) -> None:
    """Item 2: the call is placed, then the server is down for longer than the old 3 tries
    over ~1.5 s; the outcome is kept and written once it returns: dispatched, with the
    provider's session id, never 'outcome unknown'."""
    ids = _claimed(own_sessions, 3)
    knock = RestartOnKnock(own_db.cluster, after=12)
    dialer = StopsTheServerWhileDialing(own_db.cluster)
    d = Dispatcher(own_sessions, MovableClock(), dialer, DispatchPolicy(), sleep=knock)

    results = dispatch_many(d, ids)

    assert results == dict.fromkeys(ids, Result.DISPATCHED)
    assert len(knock.knocks) == 3 * 12, "each outcome waited out its own outage"
    for cid, cb in _rows(own_sessions, ids).items():
        assert cb.status is Status.DISPATCHED
        assert cb.created_session_id == f"{LogDialer.SESSION_PREFIX}{cid}.1"
        assert (cb.attempts, cb.attempt_in_flight) == (1, False)


def test_the_worker_knocks_until_its_lease_ends_and_only_then_the_reaper_resolves(
    own_db: OwnDatabase, own_sessions: sessionmaker[Session]
) -> None:
    """Item 2, the reaper's view: while the worker may still write (inside the attempt's
    lease) the reaper leaves the attempt alone; the worker gives up just before the lease
    ends, and only then does the reaper call the outcome unknown."""
    (cid,) = _claimed(own_sessions, 1)
    clock = MovableClock()
    policy = DispatchPolicy(attempt_lease=timedelta(seconds=100))
    reaped_inside_lease: list[object] = []

    def sleep(seconds: float) -> None:
        # Every knock, 10 s of the lease pass; the server stays down throughout.
        clock.at += timedelta(seconds=10)

    dialer = StopsTheServerWhileDialing(own_db.cluster)
    d = Dispatcher(own_sessions, clock, dialer, policy, sleep=sleep)
    results = dispatch_many(d, [cid])
    assert results == {cid: Result.UNRECORDED}
    started_at = _attempt_start(own_sessions, own_db, cid)
    assert clock.at >= started_at + timedelta(seconds=95), "it kept knocking to the lease's end"
    assert clock.at < started_at + timedelta(seconds=100 + 10)

    own_db.cluster.start()
    inside = reap(own_sessions, MovableClock(started_at + timedelta(seconds=99)), print, policy)
    reaped_inside_lease += inside.failed_unknown + inside.redialed
    assert reaped_inside_lease == [], "inside the lease the worker may still be writing"
    after = reap(own_sessions, MovableClock(started_at + timedelta(seconds=101)), print, policy)
    assert after.failed_unknown == [cid]


def _attempt_start(sessions: sessionmaker[Session], own_db: OwnDatabase, cid: str) -> datetime:
    own_db.cluster.start()
    (cb,) = _rows(sessions, [cid]).values()
    assert cb.attempted_at is not None
    return cb.attempted_at


def test_only_an_unreachable_database_is_waited_for_never_a_failed_statement(
    own_db: OwnDatabase, own_sessions: sessionmaker[Session]
) -> None:
    knocks: list[float] = []

    def broken() -> None:
        with own_sessions.begin() as s:
            s.execute(text("SELECT * FROM no_such_table"))

    with pytest.raises(ProgrammingError):
        while_unavailable(broken, what="test", give_up=lambda: False, sleep=knocks.append)
    assert knocks == []

    own_db.cluster.stop()
    try:
        with pytest.raises(DBAPIError) as refused, own_sessions() as s:
            s.execute(text("SELECT 1"))
        assert unavailable(refused.value)
        with pytest.raises(DBAPIError):
            while_unavailable(
                lambda: own_sessions().execute(text("SELECT 1")),
                what="test",
                give_up=lambda: len(knocks) >= 3,
                sleep=knocks.append,
            )
        assert len(knocks) == 3
    finally:
        own_db.cluster.start()
