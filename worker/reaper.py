"""The reaper: resolves callbacks stuck in ``dispatching`` once their lease has run out.

- A claim whose lease ran out before any attempt started (its message was lost, or the
  worker died first) goes back to ``scheduled``, still due, and is claimed again.
- An attempt whose lease ran out is of unknown outcome: the worker died mid-dial, or
  could not record what the provider said before the lease ran out (a worker keeps a
  dial's outcome and retries its write until just before then, worker/dispatch.py; so
  an attempt inside its lease is never taken for unknown). The phone may have rung, so
  by default it is ``failed`` with a cause that says so; with ``redial_unknown`` it is
  handed back for a new attempt with the *same* Idempotency-Key (safe only with a
  provider that honours it).

Every change is a conditional write on the expired lease, so several reapers (and a late
worker recording its outcome) can race safely: each row is resolved once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from worker import metrics
from worker.clock import Clock
from worker.db.models import Callback
from worker.dispatch import DispatchPolicy
from worker.poller import Publish
from worker.status import Status
from worker.transitions import bulk_transition, transition

log = logging.getLogger(__name__)

REAPER = "reaper"
BATCH = 500


@dataclass
class Reaped:
    requeued: list[str] = field(default_factory=list)
    failed_unknown: list[str] = field(default_factory=list)
    redialed: list[str] = field(default_factory=list)


def reap(
    sessions: sessionmaker[Session], clock: Clock, publish: Publish, policy: DispatchPolicy
) -> Reaped:
    now = clock.now()
    result = Reaped()
    with sessions.begin() as session:
        moved = bulk_transition(
            session,
            expected=Status.DISPATCHING,
            target=Status.SCHEDULED,
            now=now,
            actor=REAPER,
            guards=[Callback.attempt_in_flight.is_(False), Callback.lease_expires_at <= now],
            detail={"why": "claim lease ran out before any attempt started"},
            values={"lease_expires_at": None},
        )
        result.requeued = [m.id for m in moved]
    with sessions.begin() as session:
        stuck: Sequence[tuple[str, int]] = session.execute(
            select(Callback.id, Callback.attempts)
            .where(
                Callback.status == Status.DISPATCHING,
                Callback.attempt_in_flight.is_(True),
                Callback.lease_expires_at <= now,
            )
            .limit(BATCH)
        ).all()
        for callback_id, attempt in stuck:
            this_attempt = [
                Callback.attempts == attempt,
                Callback.attempt_in_flight.is_(True),
                Callback.lease_expires_at <= now,
            ]
            if policy.redial_unknown and policy.retry.should_retry(attempt):
                row = transition(
                    session,
                    callback_id,
                    expected=Status.DISPATCHING,
                    target=Status.DISPATCHING,
                    now=now,
                    actor=REAPER,
                    detail={"why": "attempt outcome unknown; re-sending with the same key"},
                    values={
                        "attempt_in_flight": False,
                        "lease_expires_at": now + policy.claim_lease,
                    },
                    guards=this_attempt,
                )
                if row is not None:
                    result.redialed.append(callback_id)
                continue
            cause = (
                f"outcome unknown: attempt {attempt} started but never reported back "
                "(worker lost mid-dial, or its result could not be saved within the "
                "attempt's lease); "
                "not dialed again so the person is not called twice"
            )
            row = transition(
                session,
                callback_id,
                expected=Status.DISPATCHING,
                target=Status.FAILED,
                now=now,
                actor=REAPER,
                detail={"cause": "outcome unknown"},
                values={
                    "failure_cause": cause,
                    "attempt_in_flight": False,
                    "lease_expires_at": None,
                },
                guards=this_attempt,
            )
            if row is not None:
                result.failed_unknown.append(callback_id)
    if result.redialed:
        publish(result.redialed)
    for what, ids in vars(result).items():
        metrics.REAPER_ACTIONS.labels(what).inc(len(ids))
        if ids:
            log.warning("reaper: %s %d callbacks: %s", what, len(ids), ", ".join(ids[:10]))
    return result
