"""Calling windows end to end through the poller and the dispatch, on both backends."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from freezegun import freeze_time
from sqlalchemy.orm import Session, sessionmaker

from tests.support.dialers import ScriptedDialer
from tests.support.factories import make_callback
from tests.support.history import events
from worker.clock import SystemClock
from worker.db.models import Callback
from worker.dialer.port import DialOutcome, OutcomeKind
from worker.dispatch import Dispatcher, dispatch
from worker.outcomes import Result
from worker.pacing.limits import Pacing
from worker.pacing.orgs import set_window
from worker.pacing.windows import Window
from worker.policy import DispatchPolicy
from worker.poller import PollLimits, poll
from worker.status import Status

CHICAGO = "+13125551234"
AT_23_CST = datetime(2026, 1, 16, 5, 0, tzinfo=UTC)  # 23:00 on the 15th in Chicago
AT_08_CST = datetime(2026, 1, 16, 14, 0, tzinfo=UTC)
POLICY = DispatchPolicy(pacing=Pacing(window=Window()))  # the default 08:00-21:00


class Published:
    def __init__(self) -> None:
        self.ids: list[str] = []

    def __call__(self, ids: Sequence[str]) -> None:
        self.ids.extend(ids)


def _poll(sessions: sessionmaker[Session], batch: int = 100) -> list[str]:
    out = Published()
    poll(sessions, SystemClock(), out, limits=PollLimits(batch, 2_000), policy=POLICY)
    return out.ids


def test_due_at_23_00_is_dispatched_at_08_00_and_not_before(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as s:
        cb = make_callback(s, to=CHICAGO, scheduled_at=AT_23_CST)
    with freeze_time(AT_23_CST):
        assert _poll(sessions) == []
    with sessions() as s:
        row = s.get_one(Callback, cb.id)
        assert (row.status, row.due_at, row.scheduled_at) == (
            Status.SCHEDULED,
            AT_08_CST,
            AT_23_CST,
        )
        # lateness counts from the opening, so the deferral does not make it expire
        assert row.expires_at is None or row.expires_at > AT_08_CST
    deferral = events(sessions, cb.id)[-1]
    assert (deferral.from_status, deferral.to_status) == ("dispatching", "scheduled")
    assert deferral.detail["why"] == (
        "deferred: 23:00 in America/Chicago is outside 08:00\u201321:00"
    )
    assert deferral.detail["zones"] == ["America/Chicago"]
    n_events = len(events(sessions, cb.id))
    with freeze_time(AT_08_CST - timedelta(microseconds=1)):
        assert _poll(sessions) == []
    assert len(events(sessions, cb.id)) == n_events, "a deferred row is not re-claimed"
    with freeze_time(AT_08_CST):
        assert _poll(sessions) == [cb.id]
        d = Dispatcher(sessions, SystemClock(), ScriptedDialer([DialOutcome.placed("s1")]), POLICY)
        assert dispatch(d, cb.id, manual=False) is Result.DISPATCHED
    with sessions() as s:
        assert s.get_one(Callback, cb.id).dispatched_at == AT_08_CST


def test_backlog_deferred_overnight_is_released_at_opening_in_order(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as s:
        ids = [
            make_callback(s, to=CHICAGO, scheduled_at=AT_23_CST + timedelta(minutes=10 * i)).id
            for i in range(6)
        ]
    for i in range(6):
        with freeze_time(AT_23_CST + timedelta(minutes=10 * i)):
            assert _poll(sessions) == []
    with freeze_time(AT_08_CST):
        first = _poll(sessions, batch=2)
    assert first == ids, "released at the opening, oldest scheduled_at first"


def test_manual_dispatch_defers_unless_told_to_override(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        a = make_callback(s, to=CHICAGO, scheduled_at=AT_23_CST + timedelta(days=2))
        b = make_callback(s, to=CHICAGO, scheduled_at=AT_23_CST + timedelta(days=2))
    dialer = ScriptedDialer([DialOutcome.placed("s1")])
    d = Dispatcher(sessions, SystemClock(), dialer, POLICY)
    with freeze_time(AT_23_CST):
        assert dispatch(d, a.id, manual=True, actor="manual") is Result.DEFERRED
        assert dispatch(d, b.id, manual=True, actor="manual", override_window=True) is (
            Result.DISPATCHED
        )
    with sessions() as s:
        row = s.get_one(Callback, a.id)
        assert (row.status, row.due_at, row.attempts) == (Status.SCHEDULED, AT_08_CST, 0)


def test_org_window_days_and_timezone_override(sessions: sessionmaker[Session]) -> None:
    saturday_noon_utc = datetime(2026, 1, 17, 12, 0, tzinfo=UTC)
    with sessions.begin() as s:
        set_window(
            s, "org_a", Window.parse("09:00", "17:00", "mon-fri"), "Europe/Paris", now=AT_23_CST
        )
        plain = make_callback(s, to=CHICAGO, scheduled_at=saturday_noon_utc)
        own_tz = make_callback(
            s, to=CHICAGO, scheduled_at=saturday_noon_utc, metadata={"timezone": "Asia/Tokyo"}
        )
        other_org = make_callback(s, org="org_b", to=CHICAGO, scheduled_at=saturday_noon_utc)
    with freeze_time(saturday_noon_utc):
        assert _poll(sessions) == []
    with sessions() as s:
        # org_b keeps the default window in the number's zone: 08:00 CST = 14:00 UTC
        assert s.get_one(Callback, other_org.id).due_at == datetime(2026, 1, 17, 14, tzinfo=UTC)
        # Paris, Monday 09:00 CET = 08:00 UTC; Tokyo, Monday 09:00 JST = 00:00 UTC
        assert s.get_one(Callback, plain.id).due_at == datetime(2026, 1, 19, 8, tzinfo=UTC)
        assert s.get_one(Callback, own_tz.id).due_at == datetime(2026, 1, 19, 0, tzinfo=UTC)


def test_429_pauses_the_organization_without_spending_an_attempt(
    sessions: sessionmaker[Session],
) -> None:
    now = datetime(2026, 1, 15, 18, 0, tzinfo=UTC)
    with sessions.begin() as s:
        first = make_callback(s, scheduled_at=now)
        second = make_callback(s, scheduled_at=now)
        other = make_callback(s, org="org_b", scheduled_at=now)
    limited = DialOutcome(
        OutcomeKind.TRANSIENT,
        cause="HTTP 429",
        http_status=429,
        retry_after=30.0,
    )
    d = Dispatcher(sessions, SystemClock(), ScriptedDialer([limited]), POLICY)
    with freeze_time(now):
        assert dispatch(d, first.id, manual=True, actor="manual") is Result.PAUSED
    with sessions() as s:
        row = s.get_one(Callback, first.id)
        assert (row.status, row.attempts, row.due_at) == (
            Status.SCHEDULED,
            0,
            now + timedelta(seconds=30),
        )
    with freeze_time(now + timedelta(seconds=10)):
        assert _poll(sessions) == [other.id], "org_a is paused, org_b is not"
    with freeze_time(now + timedelta(seconds=30)):
        assert sorted(_poll(sessions)) == sorted([first.id, second.id])
