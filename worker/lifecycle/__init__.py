"""Every move a callback can make, one function each: the only writes to ``callbacks``.

Each move names once the status it leaves and the one it reaches, the guards that make
it safe to race (its compare-and-set) and the columns it sets. Each is one conditional
write (invariant 2) recorded in the history in the same transaction (invariant 6), by
the private helpers of :mod:`worker.lifecycle._writes`. The poller, the worker, the
reaper, the API and the CLI call these; none of them composes a write of its own.

What can happen to a callback, by the status it is in (:data:`MOVES` says it as data):

- (new): :func:`create`
- ``scheduled``: :func:`claim_due` (poller), :func:`claim_one` (manual or API),
  :func:`cancel`
- ``dispatching`` before an attempt: :func:`start_attempts`, :func:`defer` (calling
  window), :func:`release_unstarted` (message not sent; claim lease ran out),
  :func:`undo_claim` (the API's send failed), :func:`expire`
- ``dispatching`` with an attempt in flight: :func:`record_placed`,
  :func:`reschedule_attempt` (retry wait, 429 pause, key-rejected hold),
  :func:`fail_attempt`, and once its lease ran out :func:`resend_same_key` or
  :func:`fail_unknown` (reaper)
- ``failed``: :func:`reclaim_failed` (an operator's retry, a new dispatch round)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import ColumnElement, insert, or_, select
from sqlalchemy.orm import Session

from worker.db.models import Callback
from worker.lifecycle._writes import (
    Moved,
    RowChange,
    bulk_transition,
    record,
    transition,
    transition_each,
    transition_many,
)
from worker.status import Status

__all__ = [
    "MOVES",
    "Move",
    "Moved",
    "Placed",
    "Reschedule",
    "attempts_past_lease",
    "cancel",
    "claim_due",
    "claim_one",
    "create",
    "defer",
    "expire",
    "fail_attempt",
    "fail_unknown",
    "reclaim_failed",
    "record_placed",
    "release_unstarted",
    "reschedule_attempt",
    "resend_same_key",
    "start_attempts",
    "undo_claim",
]

Edge = tuple[Status | None, Status]


@dataclass(frozen=True)
class Move:
    name: str
    edges: frozenset[Edge]
    """The (from, to) status pairs this move writes; ``None`` is "did not exist"."""


MOVES: dict[str, Move] = {}
"""Every move by name: the status table (:data:`worker.status.ALLOWED`) must be exactly
the union of their edges (tests/unit/test_lifecycle.py)."""

F = TypeVar("F", bound=Callable[..., Any])


def _move(*edges: Edge) -> Callable[[F], F]:
    def register(fn: F) -> F:
        MOVES[fn.__name__] = Move(fn.__name__, frozenset(edges))
        return fn

    return register


# --- the guards and values the moves share --------------------------------------------

_NO_ATTEMPT = Callback.attempt_in_flight.is_(False)
"""No attempt in flight: nobody is dialing this row, so it may be moved without a dial."""

_ATTEMPT_OVER = {"attempt_in_flight": False, "lease_expires_at": None}
"""What every resolution of an attempt (or of a claim) sets."""


def _this_attempt(attempt: int) -> list[ColumnElement[bool]]:
    """The attempt numbered ``attempt``, still in flight: a late or repeated write for an
    attempt that was already resolved (or superseded) changes nothing."""
    return [Callback.attempts == attempt, Callback.attempt_in_flight.is_(True)]


def _claimed(now: datetime, lease: timedelta) -> dict[str, Any]:
    return {"lease_expires_at": now + lease, "attempt_in_flight": False}


# --- creation --------------------------------------------------------------------------


@_move((None, Status.SCHEDULED))
def create(
    session: Session, fields: Sequence[Mapping[str, Any]], *, now: datetime, actor: str
) -> list[Callback]:
    """Insert callbacks as ``scheduled``, due at their ``scheduled_at``, with their first
    event. ``fields``: each one's id, content columns and ``expires_at``."""
    if not fields:
        return []
    rows = [
        {
            **f,
            "status": Status.SCHEDULED,
            "due_at": f["scheduled_at"],
            "created_at": now,
            "updated_at": now,
            "attempts": 0,
            "attempt_in_flight": False,
            "dispatch_round": 1,
        }
        for f in fields
    ]
    created = list(
        session.scalars(insert(Callback).returning(Callback, sort_by_parameter_order=True), rows)
    )
    record(session, [c.id for c in created], None, Status.SCHEDULED, now, actor)
    return created


# --- from scheduled --------------------------------------------------------------------


@_move((Status.SCHEDULED, Status.DISPATCHING))
def claim_due(
    session: Session,
    picked: ColumnElement[str],
    *,
    now: datetime,
    lease: timedelta,
    actor: str,
) -> list[Moved]:
    """Claim the picked due rows (``picked``: their ids, from the claim's pick)."""
    return bulk_transition(
        session,
        expected=Status.SCHEDULED,
        target=Status.DISPATCHING,
        now=now,
        actor=actor,
        guards=[Callback.id == picked],
        detail={"via": "poll"},
        values=_claimed(now, lease),
    )


@_move((Status.SCHEDULED, Status.DISPATCHING))
def claim_one(
    session: Session,
    callback_id: str,
    *,
    now: datetime,
    lease: timedelta,
    actor: str,
    expires_at: datetime | None,
    organization_id: str | None = None,
    via: str = "manual",
) -> Callback | None:
    """Claim one callback whatever its ``due_at`` (a manual or API dispatch).

    Someone asked for it now, so its expiry restarts (``expires_at``, from now).
    ``organization_id`` confines the claim to that organization (the API's tenant guard).
    """
    return transition(
        session,
        callback_id,
        expected=Status.SCHEDULED,
        target=Status.DISPATCHING,
        now=now,
        actor=actor,
        detail={"via": via},
        values={**_claimed(now, lease), "expires_at": expires_at},
        guards=[] if organization_id is None else [Callback.organization_id == organization_id],
    )


@_move((Status.SCHEDULED, Status.CANCELLED))
def cancel(
    session: Session,
    callback_id: str,
    *,
    organization_id: str,
    now: datetime,
    actor: str,
    reason: str | None,
) -> Callback | None:
    """Cancel a ``scheduled`` callback. The claim is conditional on ``scheduled`` too, so
    exactly one of them wins; once a cancel commits, no dial can start."""
    return transition(
        session,
        callback_id,
        expected=Status.SCHEDULED,
        target=Status.CANCELLED,
        now=now,
        actor=actor,
        detail={"reason": reason},
        values={"cancelled_at": now, "lease_expires_at": None},
        guards=[Callback.organization_id == organization_id],
    )


# --- from failed -----------------------------------------------------------------------


@_move((Status.FAILED, Status.DISPATCHING))
def reclaim_failed(
    session: Session,
    callback_id: str,
    *,
    organization_id: str,
    dispatch_round: int,
    retry_of: str | None,
    now: datetime,
    lease: timedelta,
    actor: str,
    expires_at: datetime | None,
    via: str = "api",
) -> Callback | None:
    """An operator's retry of a failed callback: claimed again in a new dispatch round,
    so with a new Idempotency-Key. Conditional on the round the operator saw
    (``dispatch_round``), so a change in between makes it miss, not clobber."""
    return transition(
        session,
        callback_id,
        expected=Status.FAILED,
        target=Status.DISPATCHING,
        now=now,
        actor=actor,
        detail={"via": via, "retry_of": retry_of},
        values={
            **_claimed(now, lease),
            "expires_at": expires_at,
            "dispatch_round": dispatch_round + 1,
            "failure_cause": None,
        },
        guards=[
            Callback.organization_id == organization_id,
            Callback.dispatch_round == dispatch_round,
        ],
    )


# --- from dispatching, before an attempt -----------------------------------------------


@_move((Status.DISPATCHING, Status.SCHEDULED), (Status.DISPATCHING, Status.FAILED))
def undo_claim(
    session: Session,
    claimed: Callback,
    *,
    back_to: Status,
    expires_at: datetime | None,
    dispatch_round: int,
    failure_cause: str | None,
    now: datetime,
    actor: str,
) -> bool:
    """Put a claim whose dispatch message was never sent back as it was (``back_to``, with
    its earlier expiry, round and cause), if no attempt started on it since."""
    restore: dict[str, Any] = {"lease_expires_at": None, "expires_at": expires_at}
    if back_to == Status.FAILED:
        restore |= {"dispatch_round": dispatch_round, "failure_cause": failure_cause}
    undone = transition(
        session,
        claimed.id,
        expected=Status.DISPATCHING,
        target=back_to,
        now=now,
        actor=actor,
        detail={"why": "broker unreachable: dispatch message not sent"},
        values=restore,
        guards=[
            _NO_ATTEMPT,
            Callback.attempts == claimed.attempts,
            Callback.dispatch_round == claimed.dispatch_round,
        ],
    )
    return undone is not None


@_move((Status.DISPATCHING, Status.SCHEDULED))
def release_unstarted(
    session: Session,
    *,
    now: datetime,
    actor: str,
    why: str,
    ids: Sequence[str] | None = None,
    lease_ran_out: bool = False,
) -> list[str]:
    """Give claims back (still due) on which no attempt started: the claims ``ids`` (their
    message could not be sent), or with ``lease_ran_out`` every claim whose lease ran out
    (its message was lost, or its worker died first)."""
    if ids is None and not lease_ran_out:
        raise ValueError("release which claims? give ids, or lease_ran_out=True")
    guards: list[ColumnElement[bool]] = [_NO_ATTEMPT]
    if ids is not None:
        guards.append(Callback.id.in_(ids))
    if lease_ran_out:
        guards.append(Callback.lease_expires_at <= now)
    moved = bulk_transition(
        session,
        expected=Status.DISPATCHING,
        target=Status.SCHEDULED,
        now=now,
        actor=actor,
        guards=guards,
        detail={"why": why},
        values={"lease_expires_at": None},
    )
    return [m.id for m in moved]


@_move((Status.DISPATCHING, Status.SCHEDULED))
def defer(
    session: Session,
    callback_id: str,
    *,
    until: datetime,
    expires_at: datetime | None,
    now: datetime,
    actor: str,
    detail: Mapping[str, Any],
) -> Callback | None:
    """A claim outside the callee's calling window goes back, due at the window's opening
    (``until``), its expiry moved to ``expires_at``; never while an attempt is in flight."""
    return transition(
        session,
        callback_id,
        expected=Status.DISPATCHING,
        target=Status.SCHEDULED,
        now=now,
        actor=actor,
        detail=detail,
        values={"due_at": until, "lease_expires_at": None, "expires_at": expires_at},
        guards=[_NO_ATTEMPT],
    )


@_move((Status.DISPATCHING, Status.DISPATCHING))
def start_attempts(
    session: Session, callback_ids: Sequence[str], *, now: datetime, lease: timedelta, actor: str
) -> list[Callback]:
    """The compare-and-set that makes the caller the only one to dial each attempt: for
    every claimed row with no attempt in flight and not expired, start the next attempt,
    leased for ``lease``. Returns the rows started."""
    return transition_many(
        session,
        callback_ids,
        expected=Status.DISPATCHING,
        target=Status.DISPATCHING,
        now=now,
        actor=actor,
        detail={"event": "attempt started"},
        values={
            "attempt_in_flight": True,
            "attempts": Callback.attempts + 1,
            "attempted_at": now,
            "lease_expires_at": now + lease,
        },
        guards=[_NO_ATTEMPT, or_(Callback.expires_at.is_(None), Callback.expires_at > now)],
    )


@_move((Status.DISPATCHING, Status.FAILED))
def expire(
    session: Session, callback_ids: Sequence[str], *, now: datetime, actor: str
) -> list[str]:
    """Claims past their ``expires_at`` fail instead of ringing hours late."""
    moved = bulk_transition(
        session,
        expected=Status.DISPATCHING,
        target=Status.FAILED,
        now=now,
        actor=actor,
        detail={"cause": "expired"},
        values={**_ATTEMPT_OVER, "failure_cause": "expired"},
        guards=[Callback.id.in_(callback_ids), _NO_ATTEMPT, Callback.expires_at <= now],
    )
    return [m.id for m in moved]


# --- from dispatching, an attempt in flight --------------------------------------------


class Placed(NamedTuple):
    id: str
    attempt: int
    session_id: str | None
    """The provider's ``sessionId``: becomes ``created_session_id``."""


@_move((Status.DISPATCHING, Status.DISPATCHED))
def record_placed(
    session: Session,
    placed: Sequence[Placed],
    *,
    now: datetime,
    actor: str,
    detail: Mapping[str, Any],
) -> list[str]:
    """The attempts ``placed`` placed their calls: ``dispatched``, in one write. Returns the
    ids that moved (an attempt already resolved elsewhere does not)."""
    return transition_each(
        session,
        [RowChange(p.id, p.attempt, {"created_session_id": p.session_id}) for p in placed],
        expected=Status.DISPATCHING,
        target=Status.DISPATCHED,
        now=now,
        actor=actor,
        detail=detail,
        values={**_ATTEMPT_OVER, "dispatched_at": now, "failure_cause": None},
        guards=[Callback.attempt_in_flight.is_(True)],
    )


class Reschedule(StrEnum):
    """Why an attempt goes back to ``scheduled``, and so whether it counts."""

    RETRY = "retry"
    """A transient failure: due again after a wait; the attempt counts."""
    PAUSE = "pause"
    """The provider rate-limited us (429): not this callback's fault, the attempt is refunded."""
    HOLD = "hold"
    """The provider rejected our own key: not this callback's fault, refunded."""

    @property
    def refunds_attempt(self) -> bool:
        return self is not Reschedule.RETRY


@_move((Status.DISPATCHING, Status.SCHEDULED))
def reschedule_attempt(
    session: Session,
    callback_id: str,
    attempt: int,
    *,
    why: Reschedule,
    due_at: datetime,
    now: datetime,
    actor: str,
    detail: Mapping[str, Any],
) -> bool:
    """Attempt ``attempt`` did not place the call: due again at ``due_at``."""
    values: dict[str, Any] = {**_ATTEMPT_OVER, "due_at": due_at}
    if why.refunds_attempt:
        values["attempts"] = attempt - 1
    row = transition(
        session,
        callback_id,
        expected=Status.DISPATCHING,
        target=Status.SCHEDULED,
        now=now,
        actor=actor,
        detail=detail,
        values=values,
        guards=_this_attempt(attempt),
    )
    return row is not None


@_move((Status.DISPATCHING, Status.FAILED))
def fail_attempt(
    session: Session,
    callback_id: str,
    attempt: int,
    *,
    cause: str,
    now: datetime,
    actor: str,
    detail: Mapping[str, Any],
) -> bool:
    """Attempt ``attempt`` ended the callback: ``failed`` with ``cause``."""
    row = transition(
        session,
        callback_id,
        expected=Status.DISPATCHING,
        target=Status.FAILED,
        now=now,
        actor=actor,
        detail=detail,
        values={**_ATTEMPT_OVER, "failure_cause": cause},
        guards=_this_attempt(attempt),
    )
    return row is not None


def _past_lease(attempt: int, now: datetime) -> list[ColumnElement[bool]]:
    return [*_this_attempt(attempt), Callback.lease_expires_at <= now]


def attempts_past_lease(session: Session, *, now: datetime, limit: int) -> list[tuple[str, int]]:
    """Attempts in flight whose lease ran out (``(id, attempt)``): of unknown outcome, for
    :func:`resend_same_key` or :func:`fail_unknown`."""
    rows = session.execute(
        select(Callback.id, Callback.attempts)
        .where(
            Callback.status == Status.DISPATCHING,
            Callback.attempt_in_flight.is_(True),
            Callback.lease_expires_at <= now,
        )
        .limit(limit)
    ).all()
    return [(row.id, row.attempts) for row in rows]


@_move((Status.DISPATCHING, Status.DISPATCHING))
def resend_same_key(
    session: Session, callback_id: str, attempt: int, *, now: datetime, lease: timedelta, actor: str
) -> bool:
    """An attempt of unknown outcome, handed back to be sent again with the same
    Idempotency-Key (safe only with a provider that honours it)."""
    row = transition(
        session,
        callback_id,
        expected=Status.DISPATCHING,
        target=Status.DISPATCHING,
        now=now,
        actor=actor,
        detail={"why": "attempt outcome unknown; re-sending with the same key"},
        values=_claimed(now, lease),
        guards=_past_lease(attempt, now),
    )
    return row is not None


@_move((Status.DISPATCHING, Status.FAILED))
def fail_unknown(
    session: Session, callback_id: str, attempt: int, *, cause: str, now: datetime, actor: str
) -> bool:
    """An attempt of unknown outcome whose lease ran out: ``failed``, never dialed again
    on its own (the phone may have rung)."""
    row = transition(
        session,
        callback_id,
        expected=Status.DISPATCHING,
        target=Status.FAILED,
        now=now,
        actor=actor,
        detail={"cause": "outcome unknown"},
        values={**_ATTEMPT_OVER, "failure_cause": cause},
        guards=_past_lease(attempt, now),
    )
    return row is not None
