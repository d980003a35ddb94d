"""Pulling the outcome of a call when no decisive event arrived (issue 14).

The platform sends its call-control events once; a missed push must never mean a missed
outcome. ``OUTCOME_PULL_AFTER`` after dispatch, a dispatched callback with no outcome is
read from the platform (``GET /v1/calls/{id}/events`` and ``/report``); a pull that
decides nothing (or fails: the platform is down) is retried with a growing wait, until
``OUTCOME_GIVE_UP_AFTER`` after dispatch, when the outcome becomes ``unknown``. A platform
that is down never produces a wrong outcome: only a pull that answered decides.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from worker import lifecycle
from worker.call_outcome import CallOutcome, PullFailed, Signals, classify
from worker.clock import Clock
from worker.db.models import Callback
from worker.platform_events import metrics
from worker.redials import OFF, RedialPolicy, schedule_redial
from worker.status import Status

log = logging.getLogger(__name__)

ACTOR = "pull"
FIRST_RETRY = timedelta(seconds=60)
LONGEST_WAIT = timedelta(hours=1)
BATCH = 200


ReadCall = Callable[[str], Signals]
"""Reads one call (by ``created_session_id``) from the platform; raises PullFailed."""


@dataclass(frozen=True)
class PullPolicy:
    pull_after: timedelta
    give_up_after: timedelta
    redials: RedialPolicy = OFF
    """The defaults (REDIAL_*) an organization's own policy overrides."""
    lateness: timedelta | None = None
    """How late a redial may still be placed (CALLBACK_MAX_LATENESS)."""


def backoff(pulls: int) -> timedelta:
    """The wait after the ``pulls``-th undecided pull: 1 min, doubling, at most 1 h."""
    wait: timedelta = FIRST_RETRY * (2 ** min(pulls, 16))
    return min(wait, LONGEST_WAIT)


@dataclass(frozen=True)
class Pending:
    id: str
    session_id: str
    dispatched_at: datetime
    pulls: int


def due_pulls(session: Session, *, now: datetime, policy: PullPolicy, limit: int) -> list[Pending]:
    rows = session.execute(
        select(
            Callback.id, Callback.created_session_id, Callback.dispatched_at, Callback.outcome_pulls
        )
        .where(
            Callback.status == Status.DISPATCHED,
            Callback.call_outcome.is_(None),
            Callback.dispatched_at <= now - policy.pull_after,
            or_(Callback.outcome_pull_at.is_(None), Callback.outcome_pull_at <= now),
        )
        .order_by(Callback.dispatched_at)
        .limit(limit)
    ).all()
    return [Pending(r[0], r[1] or "", r[2], r[3]) for r in rows if r[2] is not None]


def pull_one(
    sessions: sessionmaker[Session],
    clock: Clock,
    read: ReadCall,
    pending: Pending,
    policy: PullPolicy,
) -> str:
    """Pull one call; returns what happened (the outcome, ``retry`` or ``skipped``)."""
    outcome = CallOutcome.UNKNOWN
    failure: str | None = None
    if pending.session_id:
        try:
            outcome = classify(read(pending.session_id))
        except PullFailed as exc:
            failure = str(exc)
    now = clock.now()
    with sessions.begin() as session:
        if outcome is not CallOutcome.UNKNOWN:
            moved = lifecycle.record_call_outcome(
                session, pending.id, outcome.value, now=now, actor=ACTOR, detail={"from": "pull"}
            )
            if moved is None:
                return "skipped"
            metrics.OUTCOMES.labels(outcome.value).inc()
            schedule_redial(
                session,
                moved,
                outcome.value,
                now=now,
                defaults=policy.redials,
                lateness=policy.lateness,
            )
            return outcome.value
        if now >= pending.dispatched_at + policy.give_up_after:
            why = failure or "no decisive event or report"
            moved = lifecycle.record_call_outcome(
                session,
                pending.id,
                CallOutcome.UNKNOWN.value,
                now=now,
                actor=ACTOR,
                detail={"from": "pull", "why": f"gave up: {why}"},
            )
            if moved is None:
                return "skipped"
            metrics.OUTCOMES.labels(CallOutcome.UNKNOWN.value).inc()
            return CallOutcome.UNKNOWN.value
        lifecycle.postpone_outcome_pull(
            session,
            pending.id,
            pulls=pending.pulls,
            next_at=now + backoff(pending.pulls),
            now=now,
            actor=ACTOR,
        )
    if failure:
        log.warning("callback %s: outcome pull failed, retrying later: %s", pending.id, failure)
    return "retry"


def pull_outcomes(
    sessions: sessionmaker[Session],
    clock: Clock,
    read: ReadCall,
    policy: PullPolicy,
    *,
    limit: int = BATCH,
) -> dict[str, int]:
    """Pull every call due for it (at most ``limit``); counts by what happened."""
    with sessions.begin() as session:
        due = due_pulls(session, now=clock.now(), policy=policy, limit=limit)
    counts: dict[str, int] = {}
    for pending in due:
        result = pull_one(sessions, clock, read, pending, policy)
        counts[result] = counts.get(result, 0) + 1
    return counts
