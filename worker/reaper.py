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
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from worker import lifecycle, metrics
from worker.clock import Clock
from worker.policy import DispatchPolicy
from worker.poller import Publish

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
        result.requeued = lifecycle.release_unstarted(
            session,
            now=now,
            actor=REAPER,
            why="claim lease ran out before any attempt started",
            lease_ran_out=True,
        )
    with sessions.begin() as session:
        for callback_id, attempt in lifecycle.attempts_past_lease(session, now=now, limit=BATCH):
            if policy.redial_unknown and policy.retry.should_retry(attempt):
                if lifecycle.resend_same_key(
                    session, callback_id, attempt, now=now, lease=policy.claim_lease, actor=REAPER
                ):
                    result.redialed.append(callback_id)
                continue
            cause = (
                f"outcome unknown: attempt {attempt} started but never reported back "
                "(worker lost mid-dial, or its result could not be saved within the "
                "attempt's lease); "
                "not dialed again so the person is not called twice"
            )
            if lifecycle.fail_unknown(
                session, callback_id, attempt, cause=cause, now=now, actor=REAPER
            ):
                result.failed_unknown.append(callback_id)
    if result.redialed:
        publish(result.redialed)
    for what, ids in vars(result).items():
        metrics.REAPER_ACTIONS.labels(what).inc(len(ids))
        if ids:
            log.warning("reaper: %s %d callbacks: %s", what, len(ids), ", ".join(ids[:10]))
    return result
