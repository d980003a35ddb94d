"""The status model: statuses, the transitions between them, and which are final.

This is the only place that says what may follow what. Each transition is made by one
of the named moves of :mod:`worker.lifecycle`, and the moves make exactly these
(tests/unit/test_lifecycle.py).
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    SCHEDULED = "scheduled"
    DISPATCHING = "dispatching"
    DISPATCHED = "dispatched"
    CANCELLED = "cancelled"
    FAILED = "failed"


ALLOWED: dict[Status, frozenset[Status]] = {
    # claim (poller or manual), or cancel. A callback expires only once claimed (at the
    # start of its attempt), so nothing fails a callback straight from scheduled.
    Status.SCHEDULED: frozenset({Status.DISPATCHING, Status.CANCELLED}),
    # placed, failed, or back to due (retry wait, or a claim released before any attempt)
    Status.DISPATCHING: frozenset({Status.DISPATCHED, Status.FAILED, Status.SCHEDULED}),
    # an operator's manual retry
    Status.FAILED: frozenset({Status.DISPATCHING}),
    Status.DISPATCHED: frozenset(),
    Status.CANCELLED: frozenset(),
}

FINAL: frozenset[Status] = frozenset(s for s, nxt in ALLOWED.items() if not nxt)
"""Statuses nothing can leave."""

SETTLED: frozenset[Status] = FINAL | {Status.FAILED}
"""Statuses the worker will not move on its own (failed waits for an operator)."""


class TransitionNotAllowed(ValueError):
    def __init__(self, current: Status, target: Status) -> None:
        super().__init__(f"cannot go from {current} to {target}")
        self.current = current
        self.target = target


def can_transition(current: Status, target: Status) -> bool:
    return target in ALLOWED[current]


def check_transition(current: Status, target: Status) -> None:
    if not can_transition(current, target):
        raise TransitionNotAllowed(current, target)
