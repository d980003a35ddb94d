"""Expiry (an outage never ends with people called hours late) and the rejected-key hold."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from freezegun import freeze_time
from sqlalchemy.orm import Session, sessionmaker

from tests.support.dialers import ScriptedDialer
from tests.support.factories import T0, make_callback
from worker.clock import SystemClock
from worker.creation import schedule
from worker.db.models import Callback
from worker.dialer.log import LogDialer
from worker.dialer.port import DialOutcome, OutcomeKind
from worker.dispatch import Dispatcher, dispatch
from worker.outcomes import Result
from worker.pacing.holds import PROVIDER, active_hold
from worker.policy import DispatchPolicy
from worker.poller import PollLimits, poll
from worker.status import Status
from worker.validation import NewCallback

US = timedelta(microseconds=1)
POLICY = DispatchPolicy()


def _row(sessions: sessionmaker[Session], cid: str) -> Callback:
    with sessions() as s:
        return s.get_one(Callback, cid)


def test_new_callbacks_expire_after_the_default_or_their_own_lateness(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as s:
        default, own = schedule(
            s,
            [
                NewCallback(organization_id="o", to_number="+12015551234", scheduled_at=T0),
                NewCallback(
                    organization_id="o",
                    to_number="+12015551234",
                    scheduled_at=T0,
                    max_lateness_seconds=600,
                ),
            ],
            now=T0,
            actor="test",
            lateness=timedelta(hours=4),
        )
    assert default.expires_at == T0 + timedelta(hours=4)
    assert own.expires_at == T0 + timedelta(minutes=10)


def test_a_claimed_callback_past_its_expiry_fails_expired_and_is_not_dialed(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as s:
        late = make_callback(s, Status.DISPATCHING, expires_at=T0).id
        in_time = make_callback(s, Status.DISPATCHING, expires_at=T0 + US).id
    dialer = LogDialer()
    d = Dispatcher(sessions, SystemClock(), dialer, POLICY)
    with freeze_time(T0):
        assert dispatch(d, late, manual=False) is Result.EXPIRED
        assert dispatch(d, in_time, manual=False) is Result.DISPATCHED
    assert [r.callback_id for r in dialer.placed] == [in_time]
    row = _row(sessions, late)
    assert (row.status, row.failure_cause, row.attempts) == (Status.FAILED, "expired", 0)


def test_manual_dispatch_of_an_old_callback_restarts_its_expiry_from_now(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as s:
        cid = make_callback(s, expires_at=T0).id
    dialer = LogDialer()
    with freeze_time(T0 + timedelta(days=2)):
        result = dispatch(Dispatcher(sessions, SystemClock(), dialer, POLICY), cid, manual=True)
    assert result is Result.DISPATCHED


class Published:
    def __init__(self) -> None:
        self.ids: list[str] = []

    def __call__(self, ids: Sequence[str]) -> None:
        self.ids.extend(ids)


def test_rejected_key_holds_all_dialing_until_the_hold_ends(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as s:
        first = make_callback(s, Status.DISPATCHING).id
        waiting = make_callback(s, scheduled_at=T0).id
    rejected = DialOutcome(OutcomeKind.KEY_REJECTED, "provider rejected our API key (HTTP 401)")
    d = Dispatcher(sessions, SystemClock(), ScriptedDialer([rejected]), POLICY)
    with freeze_time(T0):
        assert dispatch(d, first, manual=False) is Result.HELD
    published = Published()
    limits = PollLimits()
    with freeze_time(T0 + POLICY.key_rejected_hold - US):
        with sessions() as s:
            hold = active_hold(s, PROVIDER, T0)
            assert hold is not None
            assert "HTTP 401" in hold.reason
        assert poll(sessions, SystemClock(), published, limits=limits, policy=POLICY) == 0
        assert _row(sessions, waiting).status is Status.SCHEDULED
    with freeze_time(T0 + POLICY.key_rejected_hold):
        assert poll(sessions, SystemClock(), published, limits=limits, policy=POLICY) == 2
    assert sorted(published.ids) == sorted([first, waiting])
