"""Issue 11, item 18: `callbacks status` says durations as a person would."""

from __future__ import annotations

import pytest

from worker.durations import say_duration


@pytest.mark.parametrize(
    ("seconds", "said"),
    [
        (218159153.953, "6 years 11 months"),  # the "oldest waiting 218159153.953 s"
        (192, "3 min 12 s"),
        (0, "0 s"),
        (0.3, "0.3 s"),
        (1, "1 s"),
        (59.4, "59 s"),
        (59.6, "1 min"),
        (60, "1 min"),
        (61, "1 min 1 s"),
        (3599.7, "1 h"),
        (3600, "1 h"),
        (3660, "1 h 1 min"),
        (7200 + 29, "2 h"),
        (86400, "1 day"),
        (90061, "1 day 1 h"),
        (2 * 86400 + 3 * 3600, "2 days 3 h"),
        (45 * 86400, "1 month 15 days"),
        (365.2425 * 86400, "1 year"),
        (2 * 365.2425 * 86400 + 10, "2 years"),
        (-192, "-3 min 12 s"),
        (float("nan"), "unknown"),
    ],
)
def test_durations_are_said_in_the_two_largest_units(seconds: float, said: str) -> None:
    assert say_duration(seconds) == said


def test_status_says_the_oldest_wait_in_words() -> None:
    from worker.report import render

    report = {
        "at": "2026-11-30T10:00:00Z",
        "counts": {"scheduled": 3},
        "due_backlog": 3,
        "oldest_due_age_seconds": 218159153.953,
        "failed_last_hour_by_cause": {},
        "held": None,
    }
    assert "due backlog: 3, oldest waiting 6 years 11 months" in render(report)
    assert "due backlog: 0\n" in render(
        {**report, "due_backlog": 0, "oldest_due_age_seconds": None}
    )
