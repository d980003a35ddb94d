"""One poll tick: claim due callbacks batch by batch and hand each to a dispatch task.

Publishing happens only after the claim has committed, so a message never names a row
that is not yet claimed. If publishing fails, the batch's claims are released (or, if
even that fails, their lease runs out and the reaper takes them back).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from worker import lifecycle, metrics
from worker.backpressure import ClaimWindow
from worker.claims import POLLER, claim_due
from worker.clock import Clock
from worker.pacing.deferral import defer_closed
from worker.pacing.holds import PROVIDER, active_hold
from worker.policy import DispatchPolicy

log = logging.getLogger(__name__)

Publish = Callable[[Sequence[str]], None]


@dataclass(frozen=True)
class PollLimits:
    batch_size: int = 100
    max_per_tick: int = 2_000
    window: ClaimWindow | None = None
    """Claims not yet started allowed at once (:mod:`worker.backpressure`); ``None``:
    no window, a tick claims up to ``max_per_tick`` whatever is queued."""


def poll(
    sessions: sessionmaker[Session],
    clock: Clock,
    publish: Publish,
    *,
    limits: PollLimits,
    policy: DispatchPolicy,
    top_up: bool = False,
) -> int:
    """Claim and publish until nothing is due, the window is full or the tick's cap is
    reached; return the count.

    ``top_up``: a worker refilling the window as it finishes a batch (between beat's
    ticks); it claims only for at least a full message's room (``window.top_up``), and
    only if no other claim is under way (it never waits for one: the worker goes back
    to dialing, and the claim under way fills the room).
    """
    # One "now" per tick: the tick takes what was due when it began, in full batches. Read
    # per batch, a steady stream of arrivals kept one tick chasing it in batches of 1-5
    # callbacks until max_per_tick, a message each (tests/perf, lag: 44 s at 200/s).
    now = clock.now()
    with sessions() as session:
        hold = active_hold(session, PROVIDER, now)
    if hold is not None:
        log.error("NOT DIALING until %s: %s", hold.until.isoformat(), hold.reason)
        return 0
    window = limits.window
    least = window.top_up if (top_up and window is not None) else 1
    total = deferred = 0
    while total + deferred < limits.max_per_tick:
        if window is not None and total + deferred:
            # Each claim after the first with a fresh `now`: a poll that goes on claims only
            # full batches (a short one ends it, below), so it cannot chase a stream of
            # arrivals in messages of 1-5; and while it keeps up with a drain, a callback
            # that came due since it began is claimed by its next claim, not the next tick's.
            now = clock.now()
        batch = min(limits.batch_size, limits.max_per_tick - total - deferred)
        with sessions.begin() as session:
            ids = claim_due(
                session,
                now=now,
                batch_size=batch,
                lease=policy.claim_lease,
                pacing=policy.pacing,
                window=window,
                least=least,
                wait=not top_up,
            )
            claimed = len(ids)
            # Calling windows: a claimed row outside its window goes back, due at the opening.
            ids = defer_closed(session, ids, now=now, pacing=policy.pacing, actor=POLLER)
        if not claimed:
            break
        least = 1  # the room was there: fill it, whatever the claim batch's size
        deferred += claimed - len(ids)
        # With a window, a claim cut short (the window's room, or nothing more due at this
        # tick's `now`) ends the poll. Going on, it chased the room as workers opened it,
        # claim after claim with the `now` it began with, for up to max_per_tick: it held
        # the claim lock nearly all the time, so the workers' top-ups (each with a fresh
        # `now`) could not claim, and a callback that came due meanwhile waited for the next
        # tick (bench_fairness: 210 claims by ticks, 2 by top-ups; each arrival claimed
        # 0.2-0.9 s after it was due, in step with beat). The top-ups refill the room now.
        last = window is not None and claimed < batch
        if not ids:
            if last:
                break
            continue
        try:
            publish(ids)
        except Exception:
            log.exception("could not publish %d claimed callbacks; releasing them", len(ids))
            release(sessions, clock, ids, why="broker unreachable: dispatch message not sent")
            raise
        total += len(ids)
        metrics.CLAIMED.inc(len(ids))
        log.info(
            "claimed %d due callbacks (%s): %s",
            len(ids),
            "top-up" if top_up else "tick",
            ", ".join(ids[:5]) + (" ..." if len(ids) > 5 else ""),
        )
        # Without a window, not `claimed < batch`: a capped number may have cut this batch
        # short, and the next claim (seeing it full) takes the organization's other numbers.
        # With one, the next top-up does.
        if last:
            break
    return total


def release(
    sessions: sessionmaker[Session], clock: Clock, ids: Sequence[str], *, why: str
) -> list[str]:
    """Give claims back (``dispatching`` → ``scheduled``) if no attempt has started on them."""
    with sessions.begin() as session:
        return lifecycle.release_unstarted(session, now=clock.now(), actor=POLLER, why=why, ids=ids)
