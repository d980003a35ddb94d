"""What to do with a dial's outcome: a pure function of the outcome, the attempt number
and the policy. No database, no clock: :mod:`worker.dispatch` carries the decision out.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import NamedTuple

from worker.dialer.port import DialOutcome, OutcomeKind
from worker.lifecycle import OUTCOME_UNKNOWN
from worker.pacing.limits import pause_wait
from worker.policy import DispatchPolicy


@dataclass(frozen=True)
class Place:
    """The call was placed: record it ``dispatched`` with the provider's session id."""

    session_id: str | None


@dataclass(frozen=True)
class Retry:
    """A transient failure with attempts left: due again in ``seconds``."""

    seconds: float


@dataclass(frozen=True)
class Pause:
    """Rate limited (429): pause the organization (or number) for ``wait``; due again then,
    without spending the attempt."""

    wait: timedelta


@dataclass(frozen=True)
class Hold:
    """The provider rejected our own key: hold all dialing for ``wait``; due again then,
    without spending the attempt."""

    wait: timedelta


@dataclass(frozen=True)
class Fail:
    """Failed, for ``cause`` (the provider refused the call, or its outcome is unknown)."""

    cause: str


@dataclass(frozen=True)
class GiveUp:
    """A transient failure on the last attempt: failed, its cause told from every attempt
    (:func:`exhausted_cause`, with the earlier ones from the history)."""


Decision = Place | Retry | Pause | Hold | Fail | GiveUp


def decide(
    outcome: DialOutcome,
    attempt: int,
    policy: DispatchPolicy,
    *,
    rng: random.Random | None = None,
) -> Decision:
    """What attempt number ``attempt`` (1-based) leads to, given what its dial did."""
    match outcome.kind:
        case OutcomeKind.PLACED:
            return Place(outcome.session_id)
        case OutcomeKind.TRANSIENT if outcome.http_status == 429:
            # Rate limited: pause the organization (or number) instead of spending retries.
            return Pause(pause_wait(outcome.retry_after, policy.pacing))
        case OutcomeKind.TRANSIENT if policy.retry.should_retry(attempt):
            return Retry(policy.retry.delay(attempt, outcome.retry_after, rng=rng))
        case OutcomeKind.TRANSIENT:
            return GiveUp()
        case OutcomeKind.KEY_REJECTED:
            # Our key, not this callback: hold it without spending one of its attempts,
            # and hold all dialing so the other due callbacks are not burnt the same way.
            return Hold(policy.key_rejected_hold)
        case OutcomeKind.PERMANENT:
            return Fail(f"provider refused the call: {outcome.cause} (attempt {attempt})")
        case OutcomeKind.UNKNOWN:
            return Fail(f"{OUTCOME_UNKNOWN}: {outcome.cause}")


class Try(NamedTuple):
    cause: str
    maybe_placed: bool


def exhausted_cause(attempts: int, earlier: Sequence[Try], last: DialOutcome) -> str:
    """The cause of a callback that ran out of attempts: each one's, and whether any of
    them may have rung the phone. ``earlier``: the transient failures before ``last``."""
    tries = [*earlier, Try(last.cause, last.maybe_placed)][-attempts:]
    listed = "; ".join(f"#{i}: {t.cause}" for i, t in enumerate(tries, start=1))
    cause = f"gave up after {attempts} attempts ({listed})"
    if any(t.maybe_placed for t in tries):
        # A timed-out request may have rung the phone: say so, so that nobody retries it
        # by hand (a new dispatch round has a new Idempotency-Key) without checking first.
        return (
            f"{OUTCOME_UNKNOWN}: an attempt timed out after the request was sent, so the call "
            f"may have been placed; {cause}"
        )
    return cause
