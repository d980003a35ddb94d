"""Pulling call outcomes from the platform stand-in (a real HTTP server): due only
OUTCOME_PULL_AFTER after dispatch, a platform that is down means a retry with backoff and
never a wrong outcome, ``unknown`` after OUTCOME_GIVE_UP_AFTER; a push and a pull racing
record one outcome. Time is the injected clock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.support.factories import make_callback
from tests.support.provider import Provider
from worker import lifecycle
from worker.db.models import Callback, CallbackEvent
from worker.dialer.calls import SpekoCalls
from worker.outcome_pull import FIRST_RETRY, PullPolicy, due_pulls, pull_one, pull_outcomes
from worker.status import Status

DISPATCHED_AT = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
POLICY = PullPolicy(pull_after=timedelta(seconds=600), give_up_after=timedelta(hours=24))


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


@pytest.fixture
def calls(provider: Provider) -> Iterator[SpekoCalls]:
    reader = SpekoCalls(provider.url, provider.api_key, connect_timeout=2, read_timeout=5)
    yield reader
    reader.close()


def dispatched(
    sessions: sessionmaker[Session], provider: Provider, number: str, behaviour: str
) -> str:
    session_id = f"sess_{number[-4:]}"
    provider.add_call(session_id, number)
    provider.call_behaviours[number] = behaviour
    with sessions.begin() as s:
        cb = make_callback(
            s,
            Status.DISPATCHED,
            to=number,
            created_session_id=session_id,
            dispatched_at=DISPATCHED_AT,
        )
        return cb.id


def outcome(sessions: sessionmaker[Session], callback_id: str) -> str | None:
    with sessions() as s:
        cb = s.get(Callback, callback_id)
        assert cb is not None
        return cb.call_outcome


def test_each_behaviour_of_the_stand_in_is_pulled_as_its_outcome(
    pg_sessions: sessionmaker[Session], provider: Provider, calls: SpekoCalls
) -> None:
    ids = {
        b: dispatched(pg_sessions, provider, f"+1201555{1000 + i}", b)
        for i, b in enumerate(("answered", "no_answer", "busy", "voicemail"))
    }
    early = Clock(DISPATCHED_AT + timedelta(seconds=599))
    assert pull_outcomes(pg_sessions, early, calls.read, POLICY) == {}
    assert provider.requests == []
    due = Clock(DISPATCHED_AT + timedelta(seconds=600))
    counts = pull_outcomes(pg_sessions, due, calls.read, POLICY)
    assert counts == {"answered": 1, "no_answer": 1, "busy": 1, "voicemail": 1}
    for behaviour, cb_id in ids.items():
        assert outcome(pg_sessions, cb_id) == behaviour
    assert {r.path for r in provider.requests} >= {"/v1/calls/sess_1001/events"}
    assert pull_outcomes(pg_sessions, due, calls.read, POLICY) == {}


def test_a_platform_down_means_retries_with_backoff_then_unknown(
    pg_sessions: sessionmaker[Session], provider: Provider, calls: SpekoCalls
) -> None:
    cb_id = dispatched(pg_sessions, provider, "+12015552000", "busy")
    provider.calls_down = True
    t = DISPATCHED_AT + timedelta(seconds=600)
    assert pull_outcomes(pg_sessions, Clock(t), calls.read, POLICY) == {"retry": 1}
    assert outcome(pg_sessions, cb_id) is None
    # Not again before the backoff, then again with a doubled wait.
    assert pull_outcomes(pg_sessions, Clock(t + FIRST_RETRY / 2), calls.read, POLICY) == {}
    assert pull_outcomes(pg_sessions, Clock(t + FIRST_RETRY), calls.read, POLICY) == {"retry": 1}
    with pg_sessions() as s:
        cb = s.get(Callback, cb_id)
        assert cb is not None
        assert cb.outcome_pull_at == t + FIRST_RETRY + 2 * FIRST_RETRY
        assert cb.outcome_pulls == 2
    # Back up: the next pull decides.
    provider.calls_down = False
    later = Clock(t + 10 * FIRST_RETRY)
    assert pull_outcomes(pg_sessions, later, calls.read, POLICY) == {"busy": 1}
    assert outcome(pg_sessions, cb_id) == "busy"


def test_past_the_give_up_time_an_undecided_call_is_unknown(
    pg_sessions: sessionmaker[Session], provider: Provider, calls: SpekoCalls
) -> None:
    cb_id = dispatched(pg_sessions, provider, "+12015553000", "answered")
    provider.calls_down = True
    end = Clock(DISPATCHED_AT + POLICY.give_up_after)
    assert pull_outcomes(pg_sessions, end, calls.read, POLICY) == {"unknown": 1}
    assert outcome(pg_sessions, cb_id) == "unknown"
    with pg_sessions() as s:
        last = s.scalars(
            select(CallbackEvent)
            .where(CallbackEvent.callback_id == cb_id)
            .order_by(CallbackEvent.id.desc())
        ).first()
    assert last is not None
    assert "gave up: platform answered HTTP 503" in last.detail["why"]


def test_a_push_and_a_pull_racing_record_one_outcome(
    pg_sessions: sessionmaker[Session], provider: Provider, calls: SpekoCalls
) -> None:
    cb_id = dispatched(pg_sessions, provider, "+12015554000", "no_answer")
    now = DISPATCHED_AT + timedelta(seconds=700)
    with pg_sessions.begin() as s:
        (pending,) = due_pulls(s, now=now, policy=POLICY, limit=10)
    # The push lands between the pull's read of due calls and its write.
    with pg_sessions.begin() as s:
        lifecycle.record_call_outcome(
            s, cb_id, "busy", now=now, actor="platform", detail={"from": "call.hangup"}
        )
    assert pull_one(pg_sessions, Clock(now), calls.read, pending, POLICY) == "skipped"
    assert outcome(pg_sessions, cb_id) == "busy"
    with pg_sessions() as s:
        events = list(s.scalars(select(CallbackEvent).where(CallbackEvent.callback_id == cb_id)))
    assert sum(1 for e in events if e.detail.get("event") == "call outcome") == 1
