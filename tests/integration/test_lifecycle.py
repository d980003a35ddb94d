"""Each move, run for real, writes exactly the transitions it declares (``MOVES``), and
every move is run: together with tests/unit/test_lifecycle.py, the status table is what
the code does, not only what it says."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from functools import partial
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.support.factories import T0, make_callback
from tests.support.history import events
from worker import lifecycle
from worker.claims import claim_due
from worker.db.models import Callback, CallbackEvent
from worker.ids import new_callback_id
from worker.lifecycle import Placed, Reschedule
from worker.status import Status

LEASE = timedelta(minutes=5)
NOW = T0 + timedelta(minutes=1)
CLAIM = lifecycle.Claim(NOW, LEASE, "t", None)


def _events_after(session: Session, last: int) -> set[tuple[Status | None, Status]]:
    rows = session.execute(
        select(CallbackEvent.from_status, CallbackEvent.to_status).where(CallbackEvent.id > last)
    ).all()
    return {(None if a is None else Status(a), Status(b)) for a, b in rows}


def _in_flight(session: Session, **state: Any) -> Callback:
    return make_callback(session, Status.DISPATCHING, attempts=1, attempt_in_flight=True, **state)


def _runs(session: Session) -> dict[str, list[Callable[[], object]]]:
    """For each move, calls that must each move one callback (set up just before)."""

    def claimed(**state: Any) -> Callback:
        return make_callback(session, Status.DISPATCHING, **state)

    def failed() -> Callback:
        return make_callback(session, Status.FAILED)

    def create() -> object:
        fields = {
            "id": new_callback_id(),
            "organization_id": "org_a",
            "to_number": "+12015551234",
            "scheduled_at": T0,
            "expires_at": None,
            "pipeline_config": {},
            "metadata_": {},
        }
        return lifecycle.create(session, [fields], now=NOW, actor="test")

    def undo(back_to: Status) -> object:
        cb = claimed()
        return lifecycle.undo_claim(
            session,
            cb,
            back_to=back_to,
            expires_at=None,
            dispatch_round=1,
            failure_cause="earlier",
            now=NOW,
            actor="test",
        )

    def reschedule(why: Reschedule) -> object:
        cb = _in_flight(session)
        return lifecycle.reschedule_attempt(
            session, cb.id, 1, why=why, due_at=NOW, now=NOW, actor="test", detail={}
        )

    return {
        "create": [create],
        "claim_due": [
            lambda: (make_callback(session), claim_due(session, now=NOW, batch_size=1, lease=LEASE))
        ],
        "claim_one": [lambda: lifecycle.claim_one(session, make_callback(session).id, CLAIM)],
        "cancel": [
            lambda: lifecycle.cancel(
                session,
                make_callback(session).id,
                organization_id="org_a",
                now=NOW,
                actor="t",
                reason=None,
            )
        ],
        "reclaim_failed": [
            lambda: lifecycle.reclaim_failed(
                session,
                failed().id,
                CLAIM,
                organization_id="org_a",
                dispatch_round=1,
                retry_of="earlier",
            )
        ],
        "undo_claim": [lambda: undo(Status.SCHEDULED), lambda: undo(Status.FAILED)],
        "release_unstarted": [
            lambda: lifecycle.release_unstarted(
                session, now=NOW, actor="t", why="test", ids=[claimed().id]
            ),
            lambda: (
                claimed(lease_expires_at=NOW),
                lifecycle.release_unstarted(
                    session, now=NOW, actor="t", why="test", lease_ran_out=True
                ),
            )[1],
        ],
        "defer": [
            lambda: lifecycle.defer(
                session,
                claimed().id,
                until=NOW + timedelta(hours=1),
                expires_at=None,
                now=NOW,
                actor="t",
                detail={},
            )
        ],
        "start_attempts": [
            lambda: lifecycle.start_attempts(
                session, [claimed().id], now=NOW, lease=LEASE, actor="t"
            )
        ],
        "expire": [
            lambda: lifecycle.expire(session, [claimed(expires_at=NOW).id], now=NOW, actor="t")
        ],
        "record_placed": [
            lambda: lifecycle.record_placed(
                session,
                [Placed(_in_flight(session).id, 1, "sess_1")],
                now=NOW,
                actor="t",
                detail={},
            )
        ],
        "reschedule_attempt": [partial(reschedule, why) for why in Reschedule],
        "fail_attempt": [
            lambda: lifecycle.fail_attempt(
                session, _in_flight(session).id, 1, cause="c", now=NOW, actor="t", detail={}
            )
        ],
        "resend_same_key": [
            lambda: lifecycle.resend_same_key(
                session,
                _in_flight(session, lease_expires_at=NOW).id,
                1,
                now=NOW,
                lease=LEASE,
                actor="t",
            )
        ],
        "fail_unknown": [
            lambda: lifecycle.fail_unknown(
                session,
                _in_flight(session, lease_expires_at=NOW).id,
                1,
                cause="c",
                now=NOW,
                actor="t",
            )
        ],
    }


def test_each_move_writes_only_the_transitions_it_declares(
    sessions: sessionmaker[Session],
) -> None:
    seen: dict[str, set[tuple[Status | None, Status]]] = {}
    with sessions.begin() as session:
        for name, calls in _runs(session).items():
            for call in calls:
                last = session.scalar(select(func.coalesce(func.max(CallbackEvent.id), 0)))
                assert call(), f"{name} moved nothing"
                made = _events_after(session, last or 0)
                if name != "create":  # the setup's own callbacks were created too
                    made.discard((None, Status.SCHEDULED))
                assert made, f"{name} recorded no transition"
                assert made <= lifecycle.MOVES[name].edges, name
                seen.setdefault(name, set()).update(made)
    assert set(seen) == set(lifecycle.MOVES)
    assert all(seen[name] == move.edges for name, move in lifecycle.MOVES.items())


def test_a_failure_of_unknown_outcome_is_reclaimed_only_with_force(
    sessions: sessionmaker[Session],
) -> None:
    cause = "outcome unknown: attempt 1 started but never reported back"
    with sessions.begin() as session:
        cb = make_callback(session, Status.FAILED, attempts=1, failure_cause=cause)
        retry = partial(
            lifecycle.reclaim_failed,
            session,
            cb.id,
            CLAIM,
            organization_id="org_a",
            dispatch_round=1,
            retry_of=cause,
        )
        assert retry() is None
        assert retry(force=True) is not None
    with sessions() as session:
        row = session.get(Callback, cb.id)
        assert row is not None
        assert (row.status, row.dispatch_round, row.failure_cause) == (Status.DISPATCHING, 2, None)
    assert events(sessions, cb.id)[-1].detail["forced"] is True
