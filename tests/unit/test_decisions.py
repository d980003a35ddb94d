"""What a dial's outcome leads to, decided without a database: one row per case."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from worker.decisions import (
    Decision,
    Fail,
    GiveUp,
    Hold,
    Pause,
    Place,
    Retry,
    Try,
    decide,
    exhausted_cause,
)
from worker.dialer.port import DialOutcome, OutcomeKind
from worker.pacing.limits import Pacing
from worker.policy import DispatchPolicy
from worker.retry import RetryPolicy

POLICY = DispatchPolicy(
    retry=RetryPolicy(max_attempts=3, base_delay=10, max_delay=100, jitter=0),
    key_rejected_hold=timedelta(minutes=2),
    pacing=Pacing(rate_limited_pause=timedelta(seconds=5)),
)


def transient(status: int | None = 503, retry_after: float | None = None) -> DialOutcome:
    return DialOutcome(
        OutcomeKind.TRANSIENT, "HTTP 503", http_status=status, retry_after=retry_after
    )


@pytest.mark.parametrize(
    ("outcome", "attempt", "expected"),
    [
        (DialOutcome.placed("sess_1"), 1, Place("sess_1")),
        (DialOutcome.placed("sess_3"), 3, Place("sess_3")),
        # transient with attempts left: exponential wait, Retry-After as a floor
        (transient(), 1, Retry(10.0)),
        (transient(), 2, Retry(20.0)),
        (transient(retry_after=45), 1, Retry(45.0)),
        (transient(status=None), 2, Retry(20.0)),
        # on the last attempt: give up (the cause is told from every attempt)
        (transient(), 3, GiveUp()),
        (transient(), 7, GiveUp()),
        # 429 pauses whatever the attempt, for Retry-After (1 s to 1 h), else the default
        (transient(429), 1, Pause(timedelta(seconds=5))),
        (transient(429), 3, Pause(timedelta(seconds=5))),
        (transient(429, retry_after=30), 1, Pause(timedelta(seconds=30))),
        (transient(429, retry_after=0.2), 1, Pause(timedelta(seconds=1))),
        (transient(429, retry_after=86_400), 1, Pause(timedelta(hours=1))),
        # our key rejected: hold, whatever the attempt
        (DialOutcome(OutcomeKind.KEY_REJECTED, "HTTP 401"), 1, Hold(timedelta(minutes=2))),
        (DialOutcome(OutcomeKind.KEY_REJECTED, "HTTP 403"), 3, Hold(timedelta(minutes=2))),
        # refused: failed with the provider's words and the attempt
        (
            DialOutcome(OutcomeKind.PERMANENT, "HTTP 404 AGENT_NOT_FOUND", http_status=404),
            2,
            Fail("provider refused the call: HTTP 404 AGENT_NOT_FOUND (attempt 2)"),
        ),
        # may be ringing: failed as unknown, never retried on its own
        (
            DialOutcome(OutcomeKind.UNKNOWN, "HTTP 200, body unreadable", maybe_placed=True),
            1,
            Fail("outcome unknown: HTTP 200, body unreadable"),
        ),
    ],
)
def test_decide(outcome: DialOutcome, attempt: int, expected: Decision) -> None:
    assert decide(outcome, attempt, POLICY) == expected


def test_retry_waits_are_jittered_within_the_policys_band() -> None:
    policy = DispatchPolicy(retry=RetryPolicy(base_delay=100, max_delay=1000, jitter=0.25))
    rng = random.Random(3)
    waits = [decide(transient(), 1, policy, rng=rng) for _ in range(50)]
    assert all(isinstance(w, Retry) and 75 <= w.seconds <= 125 for w in waits)


def test_a_pause_spends_no_attempt_even_past_the_last() -> None:
    assert isinstance(decide(transient(429), 99, POLICY), Pause)


@pytest.mark.parametrize(
    ("attempts", "earlier", "last", "expected"),
    [
        (
            2,
            [Try("HTTP 503", False)],
            DialOutcome(OutcomeKind.TRANSIENT, "HTTP 502"),
            "gave up after 2 attempts (#1: HTTP 503; #2: HTTP 502)",
        ),
        (
            # only the last `attempts` count: earlier rounds (pauses, other rounds) drop off
            2,
            [Try("old", False), Try("HTTP 503", False)],
            DialOutcome(OutcomeKind.TRANSIENT, "HTTP 502"),
            "gave up after 2 attempts (#1: HTTP 503; #2: HTTP 502)",
        ),
        (
            2,
            [Try("read timeout", True)],
            DialOutcome(OutcomeKind.TRANSIENT, "HTTP 503"),
            "outcome unknown: an attempt timed out after the request was sent, so the call "
            "may have been placed; gave up after 2 attempts (#1: read timeout; #2: HTTP 503)",
        ),
        (
            1,
            [],
            DialOutcome(OutcomeKind.TRANSIENT, "read timeout", maybe_placed=True),
            "outcome unknown: an attempt timed out after the request was sent, so the call "
            "may have been placed; gave up after 1 attempts (#1: read timeout)",
        ),
    ],
)
def test_exhausted_cause(
    attempts: int, earlier: list[Try], last: DialOutcome, expected: str
) -> None:
    assert exhausted_cause(attempts, earlier, last) == expected
