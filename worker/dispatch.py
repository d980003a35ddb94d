"""Dispatching: start the attempts, dial them side by side, record what each did.

Each step is its own short transaction. Only the winner of the attempt-start
compare-and-set dials (invariant 1); the outcome is recorded only against that same
attempt, so a late or duplicate worker can never overwrite a newer state.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from queue import Empty, SimpleQueue

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from worker import lifecycle, metrics
from worker.clock import Clock
from worker.db.models import Callback
from worker.db.retry import unavailable, while_unavailable
from worker.dialer.port import ConcurrentDialer, Dialer, DialOutcome, OutcomeKind
from worker.dialer.request import dial_request
from worker.lifecycle import Started, may_have_rung
from worker.outcomes import Result, write_outcome, write_placed
from worker.pacing.deferral import defer_closed
from worker.policy import DispatchPolicy
from worker.status import Status

log = logging.getLogger(__name__)

WORKER = "worker"


@dataclass(frozen=True)
class Dispatcher:
    sessions: sessionmaker[Session]
    clock: Clock
    dialer: Dialer
    policy: DispatchPolicy = field(default_factory=DispatchPolicy)
    dials: Executor | None = None
    """Where a batch's dials run side by side; ``None``: one after another."""
    sleep: Callable[[float], None] = time.sleep
    """How to wait between knocks on a database that is away (tests inject their own)."""


def dispatch(
    d: Dispatcher,
    callback_id: str,
    *,
    manual: bool,
    actor: str = WORKER,
    override_window: bool = False,
) -> Result:
    """Dispatch ``callback_id`` if it is claimed (or, when ``manual``, still scheduled).

    ``override_window``: dial even outside the callee's calling window (manual only).
    """
    results = dispatch_many(
        d, [callback_id], manual=manual, actor=actor, override_window=override_window
    )
    return results[callback_id]


def dispatch_many(
    d: Dispatcher,
    callback_ids: Sequence[str],
    *,
    manual: bool = False,
    actor: str = WORKER,
    override_window: bool = False,
) -> dict[str, Result]:
    """Dispatch a batch: start every attempt in one write, then dial them concurrently.

    Outcomes are recorded as their dials return (those that return together, together),
    so a crash leaves only the attempts still in flight to the reaper.
    """
    ids = list(dict.fromkeys(callback_ids))

    def start() -> tuple[list[Started], dict[str, Result]]:
        if manual:
            now, lateness = d.clock.now(), d.policy.lateness
            # Asked for now: its expiry restarts from now.
            claim = lifecycle.Claim(
                now, d.policy.claim_lease, actor, None if lateness is None else now + lateness
            )
            with d.sessions.begin() as session:
                for callback_id in ids:
                    lifecycle.claim_one(session, callback_id, claim)
        return start_attempts(d, ids, actor, override_window=manual and override_window)

    # The database away (restart, failover, stop): hold this batch and knock until it is
    # back, rather than drop it to wait out CLAIM_LEASE. The task's message stays unacked
    # meanwhile, and this worker thread takes no new one (prefetch 1), so a worker stops
    # consuming dispatch messages while the database is down. Past the claim's lease the
    # reaper has handed the claims back: give up then.
    give_up_at = d.clock.now() + d.policy.claim_lease
    started, results = while_unavailable(
        start,
        what=f"starting {len(ids)} attempts ({', '.join(ids[:3])}{'...' if len(ids) > 3 else ''})",
        give_up=lambda: d.clock.now() >= give_up_at,
        sleep=d.sleep,
    )
    for result in results.values():
        metrics.OUTCOMES.labels(result.value).inc()
    for dialed in _dial_all(d, started):
        results.update(record_outcomes(d, dialed, actor))
    return results


Dialed = list[tuple[Started, DialOutcome]]


def _dial_all(d: Dispatcher, started: Sequence[Started]) -> Iterator[Dialed]:
    """Dial every started callback; yield what has returned, as it returns."""
    if isinstance(d.dialer, ConcurrentDialer) and len(started) > 1:
        # Handed to the dialer's own event loop: no thread per dial in flight.
        yield from _started_together(d, d.dialer, started)
        return
    if d.dials is None or len(started) < 2:
        for callback in started:
            yield [(callback, _dial(d, callback))]
        return
    pending = {d.dials.submit(_dial, d, callback): callback for callback in started}
    while pending:
        done, _ = wait(pending, return_when=FIRST_COMPLETED)
        yield [(pending.pop(future), future.result()) for future in done]


def _started_together(
    d: Dispatcher, dialer: ConcurrentDialer, started: Sequence[Started]
) -> Iterator[Dialed]:
    returned: SimpleQueue[tuple[int, DialOutcome]] = SimpleQueue()
    began = time.perf_counter()

    def done(i: int, outcome: DialOutcome) -> None:
        # In the dialer's thread, as each dial returns: its own duration.
        metrics.DIAL_SECONDS.observe(time.perf_counter() - began)
        returned.put((i, outcome))

    for callback in started:
        _observe_lag(callback)
    dialer.start([dial_request(callback) for callback in started], done)
    # Past the attempt's lease the reaper owns what is still in flight; a dialer answers
    # long before (its own timeouts), so this wait only ends a thread a broken dialer hung.
    give_up = d.policy.attempt_lease.total_seconds()
    left = len(started)
    while left:
        try:
            group = [returned.get(timeout=give_up)]
        except Empty:
            log.error(
                "%d dials did not return within the attempt lease; the reaper will resolve them",
                left,
            )
            return
        while True:  # those that returned together are written together
            try:
                group.append(returned.get_nowait())
            except Empty:
                break
        left -= len(group)
        dialed = [(started[i], outcome) for i, outcome in group]
        for _, outcome in dialed:
            _count_error(outcome)
        yield dialed


def _dial(d: Dispatcher, callback: Started) -> DialOutcome:
    _observe_lag(callback)
    began = time.perf_counter()
    try:
        outcome = d.dialer.dial(dial_request(callback))
    except Exception as exc:
        outcome = _raised(callback, exc)
    metrics.DIAL_SECONDS.observe(time.perf_counter() - began)
    _count_error(outcome)
    return outcome


def _observe_lag(callback: Started) -> None:
    if callback.attempts == 1 and callback.attempted_at is not None:
        metrics.LAG_SECONDS.observe((callback.attempted_at - callback.scheduled_at).total_seconds())


def _raised(callback: Started, exc: Exception) -> DialOutcome:
    # A dialer turns every failure into an outcome; if one raises anyway, the request
    # may have gone out, so this attempt is of unknown outcome rather than lost.
    log.error("callback %s: the dialer raised", callback.id, exc_info=exc)
    return DialOutcome(OutcomeKind.UNKNOWN, f"dialer error: {exc!r}", maybe_placed=True)


def _count_error(outcome: DialOutcome) -> None:
    if outcome.kind is not OutcomeKind.PLACED:
        metrics.PROVIDER_ERRORS.labels(metrics.status_class(outcome.http_status)).inc()


def record_outcomes(d: Dispatcher, dialed: Dialed, actor: str) -> dict[str, Result]:
    """Write the outcomes of dials that returned together in one transaction.

    One commit for the group instead of one per callback (tests/perf). If the group's
    write fails, each outcome is written on its own, with its own retries.
    """
    results: dict[str, Result] | None = None
    if len(dialed) > 1:

        def write_group() -> dict[str, Result]:
            with d.sessions.begin() as session:
                written = write_placed(session, dialed, now=d.clock.now(), actor=actor)
                for callback, outcome in dialed:
                    if callback.id not in written:
                        written[callback.id] = write_outcome(
                            session,
                            callback,
                            outcome,
                            now=d.clock.now(),
                            policy=d.policy,
                            actor=actor,
                        )
            return written

        give_up_at = min(_record_deadline(d, callback) for callback, _ in dialed)
        try:
            # Only once the commit has landed; a retry after a commit that did land finds
            # the attempts resolved (their guards) and answers SKIPPED for them.
            results = while_unavailable(
                write_group,
                what=f"could not record {len(dialed)} outcomes together",
                give_up=lambda: d.clock.now() >= give_up_at,
                sleep=d.sleep,
            )
        except DBAPIError as exc:
            log.warning(
                "could not record %d outcomes together (%s); recording each alone: %s",
                len(dialed),
                exc.orig or exc,
                ", ".join(callback.id for callback, _ in dialed),
            )
    if results is None:
        results = {
            callback.id: record_outcome(d, callback, outcome, actor) for callback, outcome in dialed
        }
    for callback, outcome in dialed:
        result = results[callback.id]
        metrics.OUTCOMES.labels(
            f"failed_{outcome.kind}" if result is Result.FAILED else result.value
        ).inc()
    return results


def start_attempts(
    d: Dispatcher, callback_ids: Sequence[str], actor: str, *, override_window: bool = False
) -> tuple[list[Started], dict[str, Result]]:
    """The compare-and-set that makes this worker the only one to dial each attempt.

    Committed before the provider is called. It re-checks each row in the same write, so
    a cancel (or anything else) that committed first wins. Returns the started callbacks
    and, for the others, why not.
    """
    now = d.clock.now()
    results: dict[str, Result] = {}
    with d.sessions.begin() as session:
        ids = list(callback_ids)
        if not override_window:
            # A queue may have held the message past the window's close; a manual
            # dispatch never went through the poller's check.
            ids = defer_closed(session, ids, now=now, pacing=d.policy.pacing, actor=actor)
            results.update(dict.fromkeys(set(callback_ids) - set(ids), Result.DEFERRED))
        started = lifecycle.start_attempts(
            session, ids, now=now, lease=d.policy.attempt_lease, actor=actor
        )
        metrics.observe_claim_waits(started, now)
        missed = sorted(set(ids) - {cb.id for cb in started})
        if missed:
            results.update(_not_started(session, missed, now, actor))
    return started, results


def _not_started(
    session: Session, callback_ids: Sequence[str], now: datetime, actor: str
) -> dict[str, Result]:
    """Why these were not started: expired (fail them now), or not ours to dial."""
    results = dict.fromkeys(_expire(session, callback_ids, now, actor), Result.EXPIRED)
    others = [i for i in callback_ids if i not in results]
    found = select(Callback.id, Callback.status, Callback.failure_cause).where(
        Callback.id.in_(others)
    )
    rows = {row.id: row for row in session.execute(found)}
    statuses = {callback_id: row.status for callback_id, row in rows.items()}
    for callback_id in others:
        row = rows.get(callback_id)
        if row is not None and row.status == Status.FAILED:
            # callbacks.dispatch never re-dials a failed callback (its contract: scheduled
            # or claimed). Say where an operator's retry goes, and what it must confirm.
            unknown = may_have_rung(row.failure_cause)
            log.warning(
                "callback %s: not dialing, it is failed (%s); an operator's retry is "
                "POST /v1/callbacks/%s/dispatch%s",
                callback_id,
                row.failure_cause,
                callback_id,
                ' with {"force": true} once the provider confirms no call was placed: '
                "its outcome is unknown, the person may already have been called"
                if unknown
                else "",
            )
            results[callback_id] = Result.SKIPPED
            continue
        log.info(
            "callback %s: not dialing, it is %s (not claimed, or its attempt is taken)",
            callback_id,
            statuses.get(callback_id, "missing"),
        )
        results[callback_id] = Result.SKIPPED
    return results


def _expire(session: Session, callback_ids: Sequence[str], now: datetime, actor: str) -> list[str]:
    expired = lifecycle.expire(session, callback_ids, now=now, actor=actor)
    for callback_id in expired:
        log.warning("callback %s: expired (not placed in time); not dialing", callback_id)
    return expired


def _record_deadline(d: Dispatcher, callback: Started) -> datetime:
    """Until when a worker may keep trying to write this attempt's outcome.

    A little before the attempt's lease runs out: the reaper acts only on an expired lease,
    so while the worker still holds the outcome in memory and knocks, nobody calls it
    unknown; once the worker gives up, the lease runs out and the reaper resolves it.
    """
    lease = d.policy.attempt_lease
    ends = callback.lease_expires_at
    if ends is None:
        ends = (callback.attempted_at or d.clock.now()) + lease
    return ends - min(timedelta(seconds=5), lease / 10)


def record_outcome(d: Dispatcher, callback: Started, outcome: DialOutcome, actor: str) -> Result:
    """Write what the dial did; the outcome is kept until written or the lease runs out.

    While the database is unavailable (a restart, a failover, a stop) the write is retried
    with capped backoff for as long as the attempt's lease allows. Any other failure is
    retried ``record_retries`` times. What is still unwritten then is the reaper's.
    """
    give_up_at = _record_deadline(d, callback)

    def give_up() -> bool:
        return d.clock.now() >= give_up_at

    def write() -> Result:
        with d.sessions.begin() as session:
            return write_outcome(
                session, callback, outcome, now=d.clock.now(), policy=d.policy, actor=actor
            )

    for attempt in range(d.policy.record_retries):
        try:
            # The commit may or may not have landed: the next try's guard tells us which.
            return while_unavailable(
                write,
                what=f"callback {callback.id}: could not record outcome {outcome.kind}",
                give_up=give_up,
                sleep=d.sleep,
            )
        except DBAPIError as exc:
            log.warning(
                "callback %s: could not record outcome %s (try %d): %s",
                callback.id,
                outcome.kind,
                attempt + 1,
                exc.orig or exc,
            )
            if give_up() or unavailable(exc):
                break  # the lease is ending (while_unavailable gave up): the reaper's turn
            if attempt + 1 < d.policy.record_retries:  # no wait after the last try
                d.sleep(0.5 * (attempt + 1))
    log.error(
        "callback %s: outcome %s of attempt %d NOT recorded; the reaper will resolve it",
        callback.id,
        outcome.kind,
        callback.attempts,
    )
    return Result.UNRECORDED
