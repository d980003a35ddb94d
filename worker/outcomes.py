"""Writing what a dial did: the decision of :func:`worker.decisions.decide`, carried out
through the lifecycle's moves (and the holds a 429 or a rejected key put on dialing).

Every write is guarded by the attempt it is for: an attempt already resolved elsewhere
(the reaper; an earlier try of the same write whose commit did land) is left as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from worker import lifecycle
from worker.db.models import CallbackEvent
from worker.decisions import Fail, GiveUp, Hold, Pause, Place, Retry, Try, decide, exhausted_cause
from worker.dialer.port import DialOutcome, OutcomeKind
from worker.lifecycle import Placed, Reschedule, Started
from worker.pacing.holds import PROVIDER, set_hold
from worker.pacing.limits import pause_for_rate_limit
from worker.policy import DispatchPolicy
from worker.status import Status

log = logging.getLogger(__name__)


class Result(StrEnum):
    DISPATCHED = "dispatched"
    FAILED = "failed"
    RETRY = "retry"
    HELD = "held"
    SKIPPED = "skipped"
    EXPIRED = "expired"
    DEFERRED = "deferred"
    """Outside the callee's calling window: scheduled again at its next opening."""
    PAUSED = "paused"
    """The provider answered 429: its organization (or number) is paused, no attempt spent."""
    UNRECORDED = "unrecorded"


def _detail(outcome: DialOutcome) -> dict[str, object]:
    return {
        "outcome": str(outcome.kind),
        "http_status": outcome.http_status,
        "provider_code": outcome.provider_code,
        "cause": outcome.cause or None,
        "maybe_placed": outcome.maybe_placed or None,
    }


def write_placed(
    session: Session,
    dialed: Sequence[tuple[Started, DialOutcome]],
    *,
    now: datetime,
    actor: str,
) -> dict[str, Result]:
    """The placed calls of a group, in one write per HTTP status (nearly always one)."""
    by_status: dict[int | None, list[tuple[Started, DialOutcome]]] = {}
    for callback, outcome in dialed:
        if outcome.kind is OutcomeKind.PLACED:
            by_status.setdefault(outcome.http_status, []).append((callback, outcome))
    results: dict[str, Result] = {}
    for placed in by_status.values():
        moved = set(
            lifecycle.record_placed(
                session,
                [Placed(cb.id, cb.attempts, outcome.session_id) for cb, outcome in placed],
                now=now,
                actor=actor,
                detail=_detail(placed[0][1]),
            )
        )
        for callback, _ in placed:
            if callback.id in moved:
                results[callback.id] = Result.DISPATCHED
            else:
                _resolved_elsewhere(callback)
                results[callback.id] = Result.SKIPPED
    return results


def _resolved_elsewhere(callback: Started) -> None:
    # Someone (the reaper) already resolved this attempt; or a retry of a write whose
    # first commit did land. Either way the row says what happened.
    log.warning(
        "callback %s: attempt %d already resolved elsewhere", callback.id, callback.attempts
    )


def write_outcome(
    session: Session,
    callback: Started,
    outcome: DialOutcome,
    *,
    now: datetime,
    policy: DispatchPolicy,
    actor: str,
) -> Result:
    """Carry out what :func:`worker.decisions.decide` makes of this attempt's outcome."""
    n = callback.attempts
    detail = _detail(outcome)
    decision = decide(outcome, n, policy)
    if isinstance(decision, GiveUp):
        decision = Fail(exhausted_cause(n, _earlier_tries(session, callback.id), outcome))
    back: tuple[Reschedule, datetime] | None = None
    match decision:
        case Place(session_id):
            placed = Placed(callback.id, n, session_id)
            moved = bool(
                lifecycle.record_placed(session, [placed], now=now, actor=actor, detail=detail)
            )
            target, result = Status.DISPATCHED, Result.DISPATCHED
        case Fail(cause):
            moved = lifecycle.fail_attempt(
                session, callback.id, n, cause=cause, now=now, actor=actor, detail=detail
            )
            target, result = Status.FAILED, Result.FAILED
        case Retry(seconds):
            detail["retry_in_seconds"] = round(seconds, 3)
            back, result = (Reschedule.RETRY, now + timedelta(seconds=seconds)), Result.RETRY
        case Pause(wait):
            scope = pause_for_rate_limit(session, callback, wait, now=now, pacing=policy.pacing)
            detail.update(paused=scope, retry_in_seconds=wait.total_seconds())
            back, result = (Reschedule.PAUSE, now + wait), Result.PAUSED
        case Hold(wait):
            set_hold(session, PROVIDER, until=now + wait, reason=outcome.cause, now=now)
            log.error(
                "callback %s: PROVIDER REJECTED OUR API KEY (%s); holding, retry in %ss",
                callback.id,
                outcome.cause,
                wait.total_seconds(),
            )
            back, result = (Reschedule.HOLD, now + wait), Result.HELD
    if back is not None:
        why, due_at = back
        moved = lifecycle.reschedule_attempt(
            session, callback.id, n, why=why, due_at=due_at, now=now, actor=actor, detail=detail
        )
        target = Status.SCHEDULED
    if not moved:
        _resolved_elsewhere(callback)
        return Result.SKIPPED
    log.info("callback %s: attempt %d -> %s %s", callback.id, n, target, outcome.cause)
    return result


def _earlier_tries(session: Session, callback_id: str) -> list[Try]:
    """The transient failures after which this callback went back to ``scheduled``."""
    earlier = session.scalars(
        select(CallbackEvent.detail)
        .where(
            CallbackEvent.callback_id == callback_id, CallbackEvent.to_status == Status.SCHEDULED
        )
        .order_by(CallbackEvent.id)
    ).all()
    return [
        Try(str(e["cause"]), bool(e.get("maybe_placed")))
        for e in earlier
        if e.get("outcome") == OutcomeKind.TRANSIENT
    ]
