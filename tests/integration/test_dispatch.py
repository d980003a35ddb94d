"""Dispatching one callback: only the attempt's winner dials; outcomes land on that attempt."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from freezegun import freeze_time
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session, sessionmaker

from tests.support.dialers import ScriptedDialer
from tests.support.factories import T0, make_callback
from tests.support.history import events
from worker.clock import SystemClock
from worker.db.models import Callback, CallbackEvent
from worker.dialer.log import LogDialer
from worker.dialer.port import Dialer, DialOutcome, DialRequest, OutcomeKind
from worker.dispatch import Dispatcher, dispatch, dispatch_many, record_outcomes, start_attempts
from worker.outcomes import Result
from worker.policy import DispatchPolicy
from worker.retry import RetryPolicy
from worker.status import Status

POLICY = DispatchPolicy(retry=RetryPolicy(max_attempts=3, base_delay=10, max_delay=60, jitter=0))


@pytest.fixture(autouse=True)
def _around_t0() -> Iterator[None]:
    """Tests that don't set the time run just after T0 (inside the callbacks' lateness)."""
    with freeze_time(T0 + timedelta(seconds=1)):
        yield


def _dispatcher(sessions: sessionmaker[Session], dialer: Dialer) -> Dispatcher:
    return Dispatcher(sessions, SystemClock(), dialer, POLICY)


def _get(sessions: sessionmaker[Session], cid: str) -> Callback:
    with sessions() as s:
        return s.get_one(Callback, cid)


def _claimed(sessions: sessionmaker[Session], **state: Any) -> str:
    with sessions.begin() as s:
        return make_callback(s, Status.DISPATCHING, **state).id


@freeze_time(T0 + timedelta(seconds=2))
def test_claimed_callback_is_dialed_once_and_dispatched(sessions: sessionmaker[Session]) -> None:
    cid = _claimed(sessions)
    dialer = LogDialer()
    assert dispatch(_dispatcher(sessions, dialer), cid, manual=False) is Result.DISPATCHED
    cb = _get(sessions, cid)
    assert cb.status is Status.DISPATCHED
    assert cb.created_session_id == f"logdialer-no-call-{cid}.1"
    assert cb.attempted_at == cb.dispatched_at == T0 + timedelta(seconds=2)
    assert (cb.attempts, cb.attempt_in_flight, cb.lease_expires_at) == (1, False, None)
    assert [r.idempotency_key for r in dialer.placed] == [f"{cid}.1"]
    history = events(sessions, cid)
    assert [(e.from_status, e.to_status, e.actor) for e in history][-2:] == [
        ("dispatching", "dispatching", "worker"),
        ("dispatching", "dispatched", "worker"),
    ]
    assert history[-2].detail == {"attempt": 1, "event": "attempt started"}
    # The log dialer's "dispatched" says in words that nobody was called (issue 11, item 1).
    assert history[-1].detail["cause"] == "log-only dialer: no call was placed"
    assert history[-1].detail["http_status"] is None


def test_duplicate_delivery_dials_nothing(sessions: sessionmaker[Session]) -> None:
    cid = _claimed(sessions)
    dialer = LogDialer()
    d = _dispatcher(sessions, dialer)
    assert dispatch(d, cid, manual=False) is Result.DISPATCHED
    assert dispatch(d, cid, manual=False) is Result.SKIPPED
    assert dispatch(d, cid, manual=True) is Result.SKIPPED
    assert len(dialer.placed) == 1


@pytest.mark.parametrize("status", [Status.SCHEDULED, Status.CANCELLED, Status.FAILED])
def test_poller_message_for_an_unclaimed_callback_dials_nothing(
    sessions: sessionmaker[Session], status: Status
) -> None:
    with sessions.begin() as s:
        cid = make_callback(s, status).id
    dialer = LogDialer()
    assert dispatch(_dispatcher(sessions, dialer), cid, manual=False) is Result.SKIPPED
    assert dialer.placed == []
    assert _get(sessions, cid).status is status


def test_attempt_already_in_flight_dials_nothing(sessions: sessionmaker[Session]) -> None:
    cid = _claimed(sessions, attempts=1, attempt_in_flight=True)
    dialer = LogDialer()
    assert dispatch(_dispatcher(sessions, dialer), cid, manual=False) is Result.SKIPPED
    assert dialer.placed == []


def test_manual_dispatch_places_a_callback_that_is_not_yet_due(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as s:
        cid = make_callback(s, scheduled_at=T0 + timedelta(days=3)).id
    dialer = LogDialer()
    with freeze_time(T0):
        result = dispatch(_dispatcher(sessions, dialer), cid, manual=True, actor="manual")
    assert result is Result.DISPATCHED
    assert len(dialer.placed) == 1
    with sessions() as s:
        actors = s.scalars(
            select(CallbackEvent.actor).where(CallbackEvent.callback_id == cid)
        ).all()
    assert actors[1:] == ["manual", "manual", "manual"]


def test_many_threads_racing_on_one_callback_dial_it_once(
    pg_sessions: sessionmaker[Session],
) -> None:
    cids = [_claimed(pg_sessions) for _ in range(20)]
    dialer = LogDialer()
    d = _dispatcher(pg_sessions, dialer)
    results: list[Result] = []
    barrier = threading.Barrier(8)

    def race() -> None:
        barrier.wait()
        for cid in cids:
            results.append(dispatch(d, cid, manual=True))

    threads = [threading.Thread(target=race) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.idempotency_key for r in dialer.placed) == sorted(f"{c}.1" for c in cids)
    assert results.count(Result.DISPATCHED) == 20
    assert results.count(Result.SKIPPED) == 20 * 7


def transient(cause: str = "HTTP 503", retry_after: float | None = None) -> DialOutcome:
    return DialOutcome(OutcomeKind.TRANSIENT, cause, http_status=503, retry_after=retry_after)


def test_transient_failure_waits_in_the_database_then_exhausts_to_failed(
    sessions: sessionmaker[Session],
) -> None:
    cid = _claimed(sessions)
    dialer = ScriptedDialer(
        [transient("HTTP 503 a"), transient("HTTP 503 b", 45), transient("timeout c")]
    )
    d = _dispatcher(sessions, dialer)
    with freeze_time(T0):
        assert dispatch(d, cid, manual=False) is Result.RETRY
    cb = _get(sessions, cid)
    assert (cb.status, cb.due_at, cb.attempts, cb.attempt_in_flight) == (
        Status.SCHEDULED,
        T0 + timedelta(seconds=10),
        1,
        False,
    )
    assert cb.scheduled_at == T0, "scheduled_at stays what was asked"
    assert cb.failure_cause is None
    for n, expected_wait in ((2, 45), (3, None)):
        with sessions.begin() as s:
            s.execute(update(Callback).where(Callback.id == cid).values(status=Status.DISPATCHING))
        with freeze_time(T0 + timedelta(minutes=n)):
            result = dispatch(d, cid, manual=False)
        cb = _get(sessions, cid)
        if expected_wait is not None:
            assert result is Result.RETRY
            assert cb.due_at == T0 + timedelta(minutes=n, seconds=expected_wait), "Retry-After"
    assert result is Result.FAILED
    assert cb.status is Status.FAILED
    assert cb.failure_cause == (
        "gave up after 3 attempts (#1: HTTP 503 a; #2: HTTP 503 b; #3: timeout c)"
    )
    assert {r.idempotency_key for r in dialer.requests} == {f"{cid}.1"}, "one key per dispatch"


@pytest.mark.parametrize(
    ("outcome", "status", "cause"),
    [
        (
            DialOutcome(
                OutcomeKind.PERMANENT, "HTTP 404 NOT_FOUND: agent not found", http_status=404
            ),
            Status.FAILED,
            "provider refused the call: HTTP 404 NOT_FOUND: agent not found (attempt 1)",
        ),
        (
            DialOutcome(OutcomeKind.UNKNOWN, "provider answered 200 but ...", http_status=200),
            Status.FAILED,
            "outcome unknown: provider answered 200 but ...",
        ),
    ],
)
def test_permanent_and_unknown_outcomes_fail_with_a_cause(
    sessions: sessionmaker[Session], outcome: DialOutcome, status: Status, cause: str
) -> None:
    cid = _claimed(sessions)
    assert (
        dispatch(_dispatcher(sessions, ScriptedDialer([outcome])), cid, manual=False)
        is Result.FAILED
    )
    cb = _get(sessions, cid)
    assert (cb.status, cb.failure_cause, cb.attempt_in_flight) == (status, cause, False)


@freeze_time(T0)
def test_rejected_key_holds_the_callback_without_spending_an_attempt(
    sessions: sessionmaker[Session],
) -> None:
    cid = _claimed(sessions, attempts=1)
    rejected = DialOutcome(
        OutcomeKind.KEY_REJECTED, "provider rejected our API key", http_status=401
    )
    result = dispatch(_dispatcher(sessions, ScriptedDialer([rejected])), cid, manual=False)
    assert result is Result.HELD
    cb = _get(sessions, cid)
    assert (cb.status, cb.attempts) == (Status.SCHEDULED, 1)
    assert cb.due_at == T0 + POLICY.key_rejected_hold


def test_outcome_is_not_written_over_an_attempt_resolved_elsewhere(
    sessions: sessionmaker[Session],
) -> None:
    """If the reaper resolved the attempt meanwhile, the late worker changes nothing."""
    cid = _claimed(sessions)

    class ReaperStrikesDuringDial(LogDialer):
        def dial(self, request):  # type: ignore[no-untyped-def]
            with sessions.begin() as s:
                s.execute(
                    update(Callback)
                    .where(Callback.id == cid)
                    .values(status=Status.FAILED, attempt_in_flight=False, failure_cause="reaped")
                )
            return super().dial(request)

    result = dispatch(_dispatcher(sessions, ReaperStrikesDuringDial()), cid, manual=False)
    assert result is Result.SKIPPED
    cb = _get(sessions, cid)
    assert (cb.status, cb.failure_cause, cb.created_session_id) == (Status.FAILED, "reaped", None)


def test_exhausted_retries_after_a_timeout_say_the_outcome_is_unknown(
    sessions: sessionmaker[Session],
) -> None:
    """A request that timed out may have rung: the cause must stop a blind manual retry."""
    cid = _claimed(sessions, attempts=2)
    timed_out = DialOutcome(
        OutcomeKind.TRANSIENT, "provider did not answer in time (read timeout)", maybe_placed=True
    )
    d = _dispatcher(sessions, ScriptedDialer([timed_out]))
    assert dispatch(d, cid, manual=False) is Result.FAILED
    cause = _get(sessions, cid).failure_cause or ""
    assert cause.startswith("outcome unknown: an attempt timed out after the request was sent")
    assert "gave up after 3 attempts" in cause


class GatheringDialer:
    """Holds each dial until ``expect`` dials are in flight at once (or 10 s pass)."""

    def __init__(self, expect: int) -> None:
        self.expect = expect
        self.most_in_flight = 0
        self.keys: list[str] = []
        self._in_flight = 0
        self._all_here = threading.Event()
        self._lock = threading.Lock()

    def dial(self, request: DialRequest) -> DialOutcome:
        with self._lock:
            self.keys.append(request.idempotency_key)
            self._in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self._in_flight)
            if self._in_flight >= self.expect:
                self._all_here.set()
        self._all_here.wait(timeout=10)
        with self._lock:
            self._in_flight -= 1
        return DialOutcome(OutcomeKind.PLACED, session_id=f"s-{request.idempotency_key}")

    def close(self) -> None:
        return None


def test_a_batch_starts_in_one_write_and_dials_side_by_side(
    pg_sessions: sessionmaker[Session],
) -> None:
    cids = [_claimed(pg_sessions) for _ in range(20)]
    dialer = GatheringDialer(expect=20)
    with ThreadPoolExecutor(20) as pool:
        d = Dispatcher(pg_sessions, SystemClock(), dialer, POLICY, dials=pool)
        results = dispatch_many(d, cids)
    assert results == dict.fromkeys(cids, Result.DISPATCHED)
    assert dialer.most_in_flight == 20
    assert sorted(dialer.keys) == sorted(f"{c}.1" for c in cids)
    with pg_sessions() as s:
        started = s.execute(
            select(CallbackEvent.callback_id, CallbackEvent.at, CallbackEvent.detail).where(
                CallbackEvent.callback_id.in_(cids),
                CallbackEvent.to_status == Status.DISPATCHING,
                CallbackEvent.from_status == Status.DISPATCHING,
            )
        ).all()
        rows = s.scalars(select(Callback).where(Callback.id.in_(cids))).all()
    assert sorted(e.callback_id for e in started) == sorted(cids)
    assert {e.detail["attempt"] for e in started} == {1}
    assert {r.created_session_id for r in rows} == {f"s-{c}.1" for c in cids}


def test_a_batch_dials_only_what_it_may_and_says_why_for_the_rest(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as s:
        ready = make_callback(s, Status.DISPATCHING).id
        cancelled = make_callback(s, Status.CANCELLED).id
        taken = make_callback(s, Status.DISPATCHING, attempts=1, attempt_in_flight=True).id
        late = make_callback(s, Status.DISPATCHING, expires_at=T0).id
    dialer = LogDialer()
    with ThreadPoolExecutor(4) as pool:
        d = Dispatcher(sessions, SystemClock(), dialer, POLICY, dials=pool)
        results = dispatch_many(d, [ready, cancelled, taken, late, "cb_missing", ready])
    assert results == {
        ready: Result.DISPATCHED,
        cancelled: Result.SKIPPED,
        taken: Result.SKIPPED,
        late: Result.EXPIRED,
        "cb_missing": Result.SKIPPED,
    }
    assert [r.idempotency_key for r in dialer.placed] == [f"{ready}.1"]
    assert _get(sessions, late).failure_cause == "expired"
    assert _get(sessions, taken).attempt_in_flight is True


def test_overlapping_batches_racing_in_threads_dial_each_callback_once(
    pg_sessions: sessionmaker[Session],
) -> None:
    cids = [_claimed(pg_sessions) for _ in range(60)]
    dialer = LogDialer()
    results: list[dict[str, Result]] = []
    barrier = threading.Barrier(6)

    def race(seed: int) -> None:
        mine = random.Random(seed).sample(cids, 40)
        with ThreadPoolExecutor(8) as pool:
            d = Dispatcher(pg_sessions, SystemClock(), dialer, POLICY, dials=pool)
            barrier.wait()
            for start in range(0, len(mine), 10):
                results.append(dispatch_many(d, mine[start : start + 10]))

    threads = [threading.Thread(target=race, args=(seed,)) for seed in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    placed = [r.idempotency_key for r in dialer.placed]
    offered = {cid for batch in results for cid in batch}
    assert sorted(placed) == sorted(f"{c}.1" for c in offered)
    dispatched = [cid for batch in results for cid, r in batch.items() if r is Result.DISPATCHED]
    assert sorted(dispatched) == sorted(offered)
    with pg_sessions() as s:
        statuses = s.scalars(select(Callback.status).where(Callback.id.in_(offered))).all()
    assert set(statuses) == {Status.DISPATCHED}


class RaisingDialer:
    """A dialer with a bug: it raises instead of returning an outcome."""

    def dial(self, request: DialRequest) -> DialOutcome:
        raise RuntimeError(f"bug while dialing {request.callback_id}")

    def close(self) -> None:
        return None


def test_a_dialer_that_raises_leaves_an_unknown_outcome_not_a_hanging_attempt(
    sessions: sessionmaker[Session],
) -> None:
    cid = _claimed(sessions)
    assert dispatch(_dispatcher(sessions, RaisingDialer()), cid, manual=False) is Result.FAILED
    cb = _get(sessions, cid)
    assert (cb.status, cb.attempt_in_flight) == (Status.FAILED, False)
    assert cb.failure_cause is not None
    assert cb.failure_cause.startswith("outcome unknown: dialer error: RuntimeError")


def test_outcomes_that_return_together_are_written_together_or_each_alone(
    pg_sessions: sessionmaker[Session],
) -> None:
    d = Dispatcher(pg_sessions, SystemClock(), LogDialer(), DispatchPolicy(record_retries=1))
    started, _ = start_attempts(d, [_claimed(pg_sessions) for _ in range(3)], "worker")
    first, second, bad = started
    too_long = "s" * 300  # past the column: this row's write fails, and with it the group's
    results = record_outcomes(
        d,
        [
            (first, DialOutcome.placed("one")),
            (second, DialOutcome.placed("two")),
            (bad, DialOutcome.placed(too_long)),
        ],
        "worker",
    )
    assert results == {
        first.id: Result.DISPATCHED,
        second.id: Result.DISPATCHED,
        bad.id: Result.UNRECORDED,
    }
    assert _get(pg_sessions, first.id).created_session_id == "one"
    assert _get(pg_sessions, second.id).created_session_id == "two"
    stuck = _get(pg_sessions, bad.id)
    assert (stuck.status, stuck.attempt_in_flight) == (Status.DISPATCHING, True)  # the reaper's


def test_outcomes_of_a_group_are_written_in_one_transaction(
    pg_sessions: sessionmaker[Session],
) -> None:
    d = Dispatcher(pg_sessions, SystemClock(), LogDialer(), POLICY)
    started, _ = start_attempts(d, [_claimed(pg_sessions) for _ in range(3)], "worker")
    results = record_outcomes(
        d, [(cb, DialOutcome.placed(f"s-{cb.id}")) for cb in started], "worker"
    )
    assert set(results.values()) == {Result.DISPATCHED}
    with pg_sessions() as s:
        writers = s.scalars(
            text("SELECT xmin::text FROM callbacks WHERE id = ANY(:ids)"), {"ids": list(results)}
        ).all()
    assert len(writers) == 3
    assert len(set(writers)) == 1  # one transaction wrote them all


def test_a_group_of_placed_outcomes_lands_only_on_its_own_attempts(
    sessions: sessionmaker[Session],
) -> None:
    d = Dispatcher(sessions, SystemClock(), LogDialer(), POLICY)
    started, _ = start_attempts(d, [_claimed(sessions) for _ in range(3)], "worker")
    mine, reaped, redialed = started
    with sessions.begin() as s:
        s.execute(
            update(Callback)
            .where(Callback.id == reaped.id)
            .values(status=Status.SCHEDULED, attempt_in_flight=False)
        )
        s.execute(update(Callback).where(Callback.id == redialed.id).values(attempts=2))
    results = record_outcomes(
        d, [(cb, DialOutcome.placed(f"s-{cb.id}")) for cb in started], "worker"
    )
    assert results == {
        mine.id: Result.DISPATCHED,
        reaped.id: Result.SKIPPED,
        redialed.id: Result.SKIPPED,
    }
    assert _get(sessions, mine.id).created_session_id == f"s-{mine.id}"
    assert _get(sessions, reaped.id).status is Status.SCHEDULED
    later = _get(sessions, redialed.id)
    assert (later.status, later.attempts, later.created_session_id) == (
        Status.DISPATCHING,
        2,
        None,
    )
    with sessions() as s:
        placed_events = s.scalars(
            select(CallbackEvent.callback_id).where(CallbackEvent.to_status == Status.DISPATCHED)
        ).all()
    assert placed_events == [mine.id]


def test_a_group_whose_commit_fails_is_written_again_row_by_row(
    pg_sessions: sessionmaker[Session],
) -> None:
    # A deferred constraint trigger fails the commit itself, after every statement went in.
    install = """
        CREATE FUNCTION refuse_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'refused at commit'; END $$;
        CREATE CONSTRAINT TRIGGER refuse_at_commit AFTER UPDATE ON callbacks
        DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
        WHEN (NEW.created_session_id = 'refused') EXECUTE FUNCTION refuse_at_commit();
    """
    d = Dispatcher(pg_sessions, SystemClock(), LogDialer(), DispatchPolicy(record_retries=1))
    started, _ = start_attempts(d, [_claimed(pg_sessions) for _ in range(2)], "worker")
    good, refused = started
    with pg_sessions.begin() as s:
        s.execute(text(install))
    try:
        results = record_outcomes(
            d,
            [(good, DialOutcome.placed("fine")), (refused, DialOutcome.placed("refused"))],
            "worker",
        )
    finally:
        with pg_sessions.begin() as s:
            s.execute(text("DROP TRIGGER refuse_at_commit ON callbacks"))
            s.execute(text("DROP FUNCTION refuse_at_commit()"))
    assert results == {good.id: Result.DISPATCHED, refused.id: Result.UNRECORDED}
    assert _get(pg_sessions, good.id).created_session_id == "fine"
    assert _get(pg_sessions, refused.id).status is Status.DISPATCHING
