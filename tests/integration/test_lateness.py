"""Issue 11, item 2: nothing is dialled later than its lateness after ``scheduled_at`` plus
the calling-window waits it really had to take; one already too late is refused."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.support.factories import make_callback
from worker.clock import SystemClock
from worker.creation import schedule
from worker.db.models import Callback
from worker.dialer.log import LogDialer
from worker.dispatch import Dispatcher, dispatch_many
from worker.outcomes import Result
from worker.pacing.limits import Pacing
from worker.pacing.windows import Window
from worker.policy import DispatchPolicy
from worker.poller import PollLimits, poll
from worker.status import Status
from worker.validation import InvalidCallback, NewCallback

NEW_YORK = "+12125551234"
NOW = datetime(2026, 1, 16, 3, 0, tzinfo=UTC)  # 22:00 in New York: window closed
OPENING = datetime(2026, 1, 16, 13, 0, tzinfo=UTC)  # 08:00 in New York
LATENESS = timedelta(hours=4)
POLICY = DispatchPolicy(pacing=Pacing(window=Window()), lateness=LATENESS)


def _new(at: datetime, **extra: object) -> NewCallback:
    return NewCallback.model_validate(
        {"organization_id": "o", "to_number": NEW_YORK, "scheduled_at": at, **extra}
    )


def _count(sessions: sessionmaker[Session]) -> int:
    with sessions() as s:
        return s.scalar(select(func.count()).select_from(Callback)) or 0


def _poll(sessions: sessionmaker[Session]) -> list[str]:
    out: list[str] = []

    def publish(ids: Sequence[str]) -> None:
        out.extend(ids)

    poll(sessions, SystemClock(), publish, limits=PollLimits(100, 2_000), policy=POLICY)
    return out


def test_a_callback_already_past_its_lateness_is_refused_and_nothing_is_stored(
    sessions: sessionmaker[Session],
) -> None:
    long_ago = datetime(2020, 1, 1, 9, 0, tzinfo=UTC)
    with pytest.raises(InvalidCallback) as err, sessions.begin() as s:
        schedule(s, [_new(NOW), _new(long_ago)], now=NOW, actor="test", lateness=LATENESS)
    assert err.value.problems == [
        "callback 1: scheduled_at: 2020-01-01T09:00:00+00:00 is more than its allowed "
        "lateness (4 h) in the past, so it could only be placed too late; give a time "
        "that is not that far in the past (or a larger max_lateness_seconds)"
    ]
    assert _count(sessions) == 0, "all or nothing: the good one is not stored either"


def test_the_lateness_boundary_and_its_overrides(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        just_in_time = NOW - LATENESS + timedelta(seconds=1)
        schedule(s, [_new(just_in_time)], now=NOW, actor="t", lateness=LATENESS)
        # its own lateness wins over the default; no lateness at all: never too late
        schedule(
            s, [_new(NOW - timedelta(hours=5), max_lateness_seconds=6 * 3600)],
            now=NOW, actor="t", lateness=LATENESS,
        )  # fmt: skip
        schedule(s, [_new(datetime(2020, 1, 1, tzinfo=UTC))], now=NOW, actor="t", lateness=None)
    for bad in (_new(NOW - LATENESS), _new(NOW - timedelta(minutes=2), max_lateness_seconds=60)):
        with pytest.raises(InvalidCallback), sessions.begin() as s:
            schedule(s, [bad], now=NOW, actor="t", lateness=LATENESS)
    assert _count(sessions) == 3


def test_a_deferral_adds_only_the_wait_to_the_opening(sessions: sessionmaker[Session]) -> None:
    """Scheduled 20:50 in New York, claimed at 22:00 (a backlog): it may wait for the
    08:00 opening, and keeps only what was left of its lateness (00:50 + 10 h = 10:50),
    not a fresh 4 h from the opening."""
    scheduled = NOW - timedelta(hours=1, minutes=10)
    with sessions.begin() as s:
        cid = make_callback(s, to=NEW_YORK, scheduled_at=scheduled, created_at=scheduled).id
    with freeze_time(NOW):
        assert _poll(sessions) == []
    with sessions() as s:
        row = s.get_one(Callback, cid)
    assert (row.status, row.due_at) == (Status.SCHEDULED, OPENING)
    assert row.expires_at == scheduled + LATENESS + (OPENING - NOW)
    assert row.expires_at <= scheduled + LATENESS + (OPENING - (scheduled + timedelta(minutes=10)))


def test_a_second_deferral_does_not_count_the_first_wait_again(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as s:
        cid = make_callback(s, to=NEW_YORK, scheduled_at=NOW, created_at=NOW).id
    with freeze_time(NOW):
        _poll(sessions)
    with sessions() as s:
        first = s.get_one(Callback, cid).expires_at
    assert first == OPENING + LATENESS
    # The organization's window moved to 12:00 meanwhile: at 08:00 it waits 4 h more.
    from worker.pacing.orgs import set_window

    with sessions.begin() as s:
        set_window(s, "org_a", Window.parse("12:00", "21:00", "daily"), None, now=OPENING)
    with freeze_time(OPENING):
        assert _poll(sessions) == []
    with sessions() as s:
        row = s.get_one(Callback, cid)
    assert row.due_at == OPENING + timedelta(hours=4)
    assert row.expires_at == OPENING + LATENESS + timedelta(hours=4)


def test_a_deferral_never_revives_an_expiry_that_had_run_out(
    sessions: sessionmaker[Session],
) -> None:
    """Claimed after its expiry, outside its window: it fails as expired at once instead of
    going back to wait for the morning with a fresh expiry."""
    scheduled = NOW - LATENESS - timedelta(minutes=30)
    with sessions.begin() as s:
        cid = make_callback(s, to=NEW_YORK, scheduled_at=scheduled, created_at=scheduled).id
    with freeze_time(NOW):
        published = _poll(sessions)
        assert published == [cid], "not deferred: handed on to be failed"
        d = Dispatcher(sessions, SystemClock(), LogDialer(), POLICY)
        assert dispatch_many(d, published) == {cid: Result.EXPIRED}
    with sessions() as s:
        row = s.get_one(Callback, cid)
    assert (row.status, row.failure_cause, row.due_at) == (Status.FAILED, "expired", scheduled)
