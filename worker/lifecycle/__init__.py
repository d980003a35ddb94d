"""Every move a callback can make, one function each: the only writes to ``callbacks``.

Each move names once the status it leaves and the one it reaches, the guards that make
it safe to race (its compare-and-set) and the columns it sets. Each is one conditional
write (invariant 2) recorded in the history in the same transaction (invariant 6), by
the private helpers of :mod:`worker.lifecycle._writes`. The poller, the worker, the
reaper, the API and the CLI call these; none of them composes a write of its own.

What can happen to a callback, by the status it is in (:data:`MOVES` says it as data):

- (new): :func:`create`
- ``scheduled``: :func:`claim_due` (poller), :func:`claim_one` (manual or API),
  :func:`cancel`, :func:`reschedule` (an operator's edit: time, words, metadata)
- ``dispatching`` before an attempt: :func:`start_attempts`, :func:`defer` (calling
  window), :func:`release_unstarted` (message not sent; claim lease ran out),
  :func:`undo_claim` (the API's send failed), :func:`expire`
- ``dispatching`` with an attempt in flight: :func:`record_placed`,
  :func:`reschedule_attempt` (retry wait, 429 pause, key-rejected hold),
  :func:`fail_attempt`, and once its lease ran out :func:`resend_same_key` or
  :func:`fail_unknown` (reaper)
- ``failed``: :func:`reclaim_failed` (an operator's retry, a new dispatch round)
- ``dispatched``: :func:`record_call_outcome` (what became of the call; the first wins),
  :func:`postpone_outcome_pull` (a pull decided nothing: pull again later)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import ColumnElement, Table, bindparam, func, insert, or_, select, update
from sqlalchemy.orm import Session

from worker.db.models import Callback, idempotency_key
from worker.db.types import UTCDateTime
from worker.lifecycle._writes import (
    Change,
    Moved,
    RowChange,
    bulk_transition,
    record,
    record_moved,
    transition,
    transition_each,
)
from worker.status import Status
from worker.webhooks.outbox import EventType, announce

__all__ = [
    "MOVES",
    "OUTCOME_UNKNOWN",
    "Claim",
    "Move",
    "Moved",
    "Placed",
    "Reschedule",
    "Started",
    "attempts_past_lease",
    "cancel",
    "claim_due",
    "claim_one",
    "create",
    "defer",
    "expire",
    "fail_attempt",
    "fail_unknown",
    "may_have_rung",
    "postpone_outcome_pull",
    "reclaim_failed",
    "record_call_outcome",
    "record_placed",
    "release_unstarted",
    "reschedule",
    "reschedule_attempt",
    "resend_same_key",
    "start_attempts",
    "tell_redial_scheduled",
    "undo_claim",
]

Edge = tuple[Status | None, Status]

OUTCOME_UNKNOWN = "outcome unknown"
"""How every failure cause that means "the call may have been placed" begins."""


def may_have_rung(failure_cause: str | None) -> bool:
    """Whether a failed callback's last attempt may have placed a call after all."""
    return bool(failure_cause and failure_cause.startswith(OUTCOME_UNKNOWN))


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


SCHEDULED, DISPATCHING = Status.SCHEDULED, Status.DISPATCHING
DISPATCHED, CANCELLED, FAILED = Status.DISPATCHED, Status.CANCELLED, Status.FAILED


# --- the guards and values the moves share --------------------------------------------

_NO_ATTEMPT = Callback.attempt_in_flight.is_(False)
"""No attempt in flight: nobody is dialing this row, so it may be moved without a dial."""


def _over(**values: Any) -> dict[str, Any]:
    """What every resolution of an attempt sets, and ``values``."""
    return {"attempt_in_flight": False, "lease_expires_at": None, **values}


def _claimed(now: datetime, lease: timedelta, **values: Any) -> dict[str, Any]:
    """What every claim sets (leased, no attempt yet, when), and ``values``."""
    return {
        "lease_expires_at": now + lease,
        "attempt_in_flight": False,
        "claimed_at": now,
        **values,
    }


def _this_attempt(attempt: int) -> list[ColumnElement[bool]]:
    """The attempt numbered ``attempt``, still in flight: a late or repeated write for an
    attempt that was already resolved (or superseded) changes nothing."""
    return [Callback.attempts == attempt, Callback.attempt_in_flight.is_(True)]


def _past_lease(attempt: int, now: datetime) -> list[ColumnElement[bool]]:
    return [*_this_attempt(attempt), Callback.lease_expires_at <= now]


# --- creation --------------------------------------------------------------------------


@_move((None, SCHEDULED))
def create(
    session: Session, fields: Sequence[Mapping[str, Any]], *, now: datetime, actor: str
) -> list[Callback]:
    """Insert callbacks as ``scheduled``, due at their ``scheduled_at``, with their first
    event. ``fields``: each one's id, content columns and ``expires_at``."""
    if not fields:
        return []
    new = {"status": SCHEDULED, "created_at": now, "updated_at": now, "attempts": 0}
    new |= {"attempt_in_flight": False, "dispatch_round": 1}
    rows = [{**f, **new, "due_at": f["scheduled_at"]} for f in fields]
    returning = insert(Callback).returning(Callback, sort_by_parameter_order=True)
    created = list(session.scalars(returning, rows))
    record(session, [c.id for c in created], None, SCHEDULED, now, actor)
    _tell(session, EventType.SCHEDULED, [c.id for c in created], None, now, {})
    return created


# --- from scheduled --------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """The terms of a claim someone asked for (a manual or API dispatch): by ``actor`` at
    ``now``, leased for ``lease``; asked for now, so its expiry restarts (``expires_at``)."""

    now: datetime
    lease: timedelta
    actor: str
    expires_at: datetime | None


@_move((SCHEDULED, DISPATCHING))
def claim_due(
    session: Session, picked: ColumnElement[str], *, now: datetime, lease: timedelta, actor: str
) -> list[Moved]:
    """Claim the picked due rows (``picked``: their ids, from the claim's pick).

    Still due is part of the write, not only of the pick: an edit (``reschedule``) keeps
    a row ``scheduled`` but moves its ``due_at``, and a claim whose pick read the old
    version must then miss it (PostgreSQL re-checks this WHERE on the row it waited for).
    """
    values = _claimed(now, lease)
    guards = [Callback.id == picked, Callback.due_at <= now]
    change = Change(SCHEDULED, DISPATCHING, now, actor, {"via": "poll"}, values, guards)
    return bulk_transition(session, change)


@_move((SCHEDULED, DISPATCHING))
def claim_one(
    session: Session,
    callback_id: str,
    claim: Claim,
    *,
    organization_id: str | None = None,
    via: str = "manual",
) -> Callback | None:
    """Claim one callback whatever its ``due_at`` (a manual or API dispatch).

    ``organization_id`` confines the claim to that organization (the API's tenant guard).
    """
    guards = [] if organization_id is None else [Callback.organization_id == organization_id]
    values = _claimed(claim.now, claim.lease, expires_at=claim.expires_at)
    detail = {"via": via}
    change = Change(SCHEDULED, DISPATCHING, claim.now, claim.actor, detail, values, guards)
    return transition(session, callback_id, change)


@_move((SCHEDULED, CANCELLED))
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
    values = {"cancelled_at": now, "lease_expires_at": None}
    guards = [Callback.organization_id == organization_id]
    change = Change(SCHEDULED, CANCELLED, now, actor, {"reason": reason}, values, guards)
    row = transition(session, callback_id, change)
    if row is not None:
        _tell(session, EventType.CANCELLED, [row.id], SCHEDULED, now, {"reason": reason})
    return row


# --- from failed -----------------------------------------------------------------------


@_move((FAILED, DISPATCHING))
def reclaim_failed(
    session: Session,
    callback_id: str,
    claim: Claim,
    *,
    organization_id: str,
    dispatch_round: int,
    retry_of: str | None,
    force: bool = False,
    via: str = "api",
) -> Callback | None:
    """An operator's retry of a failed callback: claimed again in a new dispatch round,
    so with a new Idempotency-Key. Conditional on the round the operator saw
    (``dispatch_round``), so a change in between makes it miss, not clobber; and, unless
    ``force`` (the operator confirmed no call was placed), on a failure whose outcome is
    known: one that may have rung the phone is never dialed again unasked."""
    values = _claimed(claim.now, claim.lease, expires_at=claim.expires_at, failure_cause=None)
    values["dispatch_round"] = dispatch_round + 1
    guards = [
        Callback.organization_id == organization_id,
        Callback.dispatch_round == dispatch_round,
    ]
    if not force:
        known = ~func.coalesce(Callback.failure_cause, "").startswith(OUTCOME_UNKNOWN)
        guards.append(known)
    detail = {"via": via, "retry_of": retry_of, "forced": force or None}
    change = Change(FAILED, DISPATCHING, claim.now, claim.actor, detail, values, guards)
    return transition(session, callback_id, change)


# --- from dispatching, before an attempt -----------------------------------------------


@_move((DISPATCHING, SCHEDULED), (DISPATCHING, FAILED))
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
    if back_to == FAILED:
        restore |= {"dispatch_round": dispatch_round, "failure_cause": failure_cause}
    unchanged = [
        _NO_ATTEMPT,
        Callback.attempts == claimed.attempts,
        Callback.dispatch_round == claimed.dispatch_round,
    ]
    detail = {"why": "broker unreachable: dispatch message not sent"}
    change = Change(DISPATCHING, back_to, now, actor, detail, restore, unchanged)
    return transition(session, claimed.id, change) is not None


@_move((DISPATCHING, SCHEDULED))
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
    values = {"lease_expires_at": None}
    change = Change(DISPATCHING, SCHEDULED, now, actor, {"why": why}, values, guards)
    return [m.id for m in bulk_transition(session, change)]


@_move((DISPATCHING, SCHEDULED))
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
    values = {"due_at": until, "lease_expires_at": None, "expires_at": expires_at}
    change = Change(DISPATCHING, SCHEDULED, now, actor, detail, values, [_NO_ATTEMPT])
    row = transition(session, callback_id, change)
    if row is not None:
        _tell(session, EventType.DEFERRED, [row.id], DISPATCHING, now, detail)
    return row


class Started(NamedTuple):
    """An attempt just started: the columns its dial and the write of its outcome read,
    and nothing else (:func:`start_attempts`)."""

    id: str
    organization_id: str
    attempts: int
    dispatch_round: int
    scheduled_at: datetime
    attempted_at: datetime | None
    lease_expires_at: datetime | None
    claimed_at: datetime | None
    source_session_id: str | None
    agent_id: str | None
    phone_number_id: str | None
    to_number: str
    from_number: str | None
    reason: str | None
    instructions: str | None
    summary: str | None
    pipeline_config: dict[str, Any]
    metadata_: dict[str, Any]

    @property
    def idempotency_key(self) -> str:
        return idempotency_key(self.id, self.dispatch_round)


_CALLBACKS: Table = Callback.metadata.tables[Callback.__tablename__]
_NOW = bindparam("now", type_=UTCDateTime())
# Built once, on the table (no ORM entities: building a Callback per started row, with the
# columns a dial never reads, was most of an attempt start's cost; tests/perf), returning
# only the columns of :class:`Started`.
_START = (
    update(_CALLBACKS)
    .where(
        _CALLBACKS.c.id.in_(bindparam("ids", expanding=True)),
        _CALLBACKS.c.status == DISPATCHING,
        _CALLBACKS.c.attempt_in_flight.is_(False),  # no attempt in flight
        or_(_CALLBACKS.c.expires_at.is_(None), _CALLBACKS.c.expires_at > _NOW),  # unexpired
    )
    .values(
        status=DISPATCHING,
        updated_at=_NOW,
        attempt_in_flight=True,
        attempts=_CALLBACKS.c.attempts + 1,
        attempted_at=_NOW,
        lease_expires_at=bindparam("lease_ends", type_=UTCDateTime()),
    )
    .returning(
        *(
            _CALLBACKS.c.metadata.label(name)
            if name == "metadata_"
            else _CALLBACKS.c[name].label(name)
            for name in Started._fields
        )
    )
)


@_move((DISPATCHING, DISPATCHING))
def start_attempts(
    session: Session, callback_ids: Sequence[str], *, now: datetime, lease: timedelta, actor: str
) -> list[Started]:
    """The compare-and-set that makes the caller the only one to dial each attempt: for
    every claimed row with no attempt in flight and not expired, start the next attempt
    (``attempts + 1``, ``attempt_in_flight``, ``attempted_at``), leased for ``lease``, in
    one write (``_START``). Returns the attempts started."""
    if not callback_ids:
        return []
    params = {"ids": list(callback_ids), "now": now, "lease_ends": now + lease}
    started = [Started(*row) for row in session.execute(_START, params)]
    record_moved(
        session, started, Change(DISPATCHING, DISPATCHING, now, actor, {"event": "attempt started"})
    )
    return started


@_move((DISPATCHING, FAILED))
def expire(
    session: Session, callback_ids: Sequence[str], *, now: datetime, actor: str
) -> list[str]:
    """Claims past their ``expires_at`` fail instead of ringing hours late."""
    guards = [Callback.id.in_(callback_ids), _NO_ATTEMPT, Callback.expires_at <= now]
    values = _over(failure_cause="expired")
    change = Change(DISPATCHING, FAILED, now, actor, {"cause": "expired"}, values, guards)
    expired = [m.id for m in bulk_transition(session, change)]
    _tell(session, EventType.FAILED, expired, DISPATCHING, now, {"cause": "expired"})
    return expired


# --- from dispatching, an attempt in flight --------------------------------------------


class Placed(NamedTuple):
    id: str
    attempt: int
    session_id: str | None
    """The provider's ``sessionId``: becomes ``created_session_id``."""


@_move((DISPATCHING, DISPATCHED))
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
    each = [RowChange(p.id, p.attempt, {"created_session_id": p.session_id}) for p in placed]
    values = _over(dispatched_at=now, failure_cause=None)
    in_flight = [Callback.attempt_in_flight.is_(True)]
    change = Change(DISPATCHING, DISPATCHED, now, actor, detail, values, in_flight)
    moved = transition_each(session, each, change)
    _tell(session, EventType.DISPATCHED, moved, DISPATCHING, now, detail)
    return moved


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


@_move((DISPATCHING, SCHEDULED))
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
    values = _over(due_at=due_at)
    if why.refunds_attempt:
        values["attempts"] = attempt - 1
    change = Change(DISPATCHING, SCHEDULED, now, actor, detail, values, _this_attempt(attempt))
    return transition(session, callback_id, change) is not None


@_move((DISPATCHING, FAILED))
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
    values = _over(failure_cause=cause)
    change = Change(DISPATCHING, FAILED, now, actor, detail, values, _this_attempt(attempt))
    if transition(session, callback_id, change) is None:
        return False
    _tell(session, EventType.FAILED, [callback_id], DISPATCHING, now, {**detail, "cause": cause})
    return True


def attempts_past_lease(session: Session, *, now: datetime, limit: int) -> list[tuple[str, int]]:
    """Attempts in flight whose lease ran out (``(id, attempt)``): of unknown outcome, for
    :func:`resend_same_key` or :func:`fail_unknown`."""
    rows = session.execute(
        select(Callback.id, Callback.attempts)
        .where(
            Callback.status == DISPATCHING,
            Callback.attempt_in_flight.is_(True),
            Callback.lease_expires_at <= now,
        )
        .limit(limit)
    ).all()
    return [(row.id, row.attempts) for row in rows]


@_move((DISPATCHING, DISPATCHING))
def resend_same_key(
    session: Session, callback_id: str, attempt: int, *, now: datetime, lease: timedelta, actor: str
) -> bool:
    """An attempt of unknown outcome, handed back to be sent again with the same
    Idempotency-Key (safe only with a provider that honours it)."""
    detail = {"why": "attempt outcome unknown; re-sending with the same key"}
    values, guards = _claimed(now, lease), _past_lease(attempt, now)
    change = Change(DISPATCHING, DISPATCHING, now, actor, detail, values, guards)
    return transition(session, callback_id, change) is not None


@_move((DISPATCHING, FAILED))
def fail_unknown(
    session: Session, callback_id: str, attempt: int, *, cause: str, now: datetime, actor: str
) -> bool:
    """An attempt of unknown outcome whose lease ran out: ``failed``, never dialed again
    on its own (the phone may have rung)."""
    detail, values = {"cause": "outcome unknown"}, _over(failure_cause=cause)
    change = Change(DISPATCHING, FAILED, now, actor, detail, values, _past_lease(attempt, now))
    if transition(session, callback_id, change) is None:
        return False
    _tell(session, EventType.FAILED, [callback_id], DISPATCHING, now, {"cause": cause})
    return True


# --- an operator's edit of a scheduled callback (issue 16) ---------------------------


@_move((SCHEDULED, SCHEDULED))
def reschedule(
    session: Session,
    callback_id: str,
    *,
    organization_id: str,
    seen_scheduled_at: datetime,
    values: Mapping[str, Any],
    now: datetime,
    actor: str,
    why: Mapping[str, Any],
) -> Callback | None:
    """Change a ``scheduled`` callback's time or words (``values``: its columns).

    A new ``scheduled_at`` comes with the ``due_at`` and ``expires_at`` it implies (the
    caller computes them from the row it read). Conditional on ``scheduled`` and on the
    ``scheduled_at`` the caller read (``seen_scheduled_at``): a claim by the poller, or
    another edit, in between makes it miss, not clobber; the caller learns the status.
    """
    guards = [
        Callback.organization_id == organization_id,
        Callback.scheduled_at == seen_scheduled_at,
        _NO_ATTEMPT,
    ]
    change = Change(SCHEDULED, SCHEDULED, now, actor, dict(why), dict(values), guards)
    return transition(session, callback_id, change)


# --- dispatched: the call's outcome (issue 14) ------------------------------------------


@_move((DISPATCHED, DISPATCHED))
def record_call_outcome(
    session: Session,
    callback_id: str,
    outcome: str,
    *,
    now: datetime,
    actor: str,
    detail: Mapping[str, Any],
) -> Callback | None:
    """Record what became of the call a dispatched callback placed. Only the first
    outcome is kept: a duplicate, a late push or a racing pull changes nothing (None)."""
    values = {"call_outcome": outcome, "call_outcome_at": now}
    guards = [Callback.call_outcome.is_(None)]
    detail = {"event": "call outcome", "call_outcome": outcome, **detail}
    change = Change(DISPATCHED, DISPATCHED, now, actor, detail, values, guards)
    row = transition(session, callback_id, change)
    if row is not None:
        _tell(session, EventType.OUTCOME, [row.id], DISPATCHED, now, detail)
    return row


@_move((DISPATCHED, DISPATCHED))
def postpone_outcome_pull(
    session: Session,
    callback_id: str,
    *,
    pulls: int,
    next_at: datetime,
    now: datetime,
    actor: str,
) -> bool:
    """A pull of the call's outcome decided nothing: the next one at ``next_at``. Only
    while no outcome is recorded and no other puller moved it first (``pulls``)."""
    values = {"outcome_pull_at": next_at, "outcome_pulls": pulls + 1}
    guards = [Callback.call_outcome.is_(None), Callback.outcome_pulls == pulls]
    detail = {"event": "outcome pull undecided", "pulls": pulls + 1}
    change = Change(DISPATCHED, DISPATCHED, now, actor, detail, values, guards)
    return transition(session, callback_id, change) is not None


# --- callback webhooks out (issue 15) ---------------------------------------------------

WEBHOOK_EVENTS: dict[str, EventType] = {
    "create": EventType.SCHEDULED,
    "cancel": EventType.CANCELLED,
    "defer": EventType.DEFERRED,
    "record_placed": EventType.DISPATCHED,
    "expire": EventType.FAILED,
    "fail_attempt": EventType.FAILED,
    "fail_unknown": EventType.FAILED,
    "record_call_outcome": EventType.OUTCOME,
}
"""The moves a customer hears about (``callback.*`` webhooks), each told once, in the
move's own transaction. The others are internal: a claim, an attempt starting, a retry
wait (the callback is still on its way), an undone claim (nothing happened)."""


def _tell(
    session: Session,
    event_type: EventType,
    ids: Sequence[str],
    previous: Status | None,
    now: datetime,
    detail: Mapping[str, Any],
) -> None:
    previous_status = None if previous is None else str(previous)
    announce(session, event_type, ids, previous_status=previous_status, now=now, detail=detail)


def tell_redial_scheduled(
    session: Session, callback_id: str, redial: Callback, *, now: datetime
) -> None:
    """``callback.redial_scheduled`` for the callback whose outcome asked for ``redial``,
    in the transaction that created it (the redial itself is told as scheduled)."""
    detail = {
        "redial_id": redial.id,
        "redial_number": redial.metadata_.get("redial_number"),
        "scheduled_at": redial.scheduled_at.isoformat(),
    }
    _tell(session, EventType.REDIAL_SCHEDULED, [callback_id], DISPATCHED, now, detail)
