"""Redials (issue 14): a call that was not answered is placed again on the
organization's policy, as a **new callback** created in the same transaction as the
outcome that asks for it.

The outcome write is one conditional write that only the first decisive outcome wins
(:func:`worker.lifecycle.record_call_outcome`), and the redial is created only by that
winner, in its transaction: so exactly one redial per qualifying outcome, whatever
duplicates, reorderings, push/pull races and crashes happen (a crash rolls both back).
The creation key ``redial:<callback id>`` is a second guard: a redial is never created
twice for one callback.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import Counter
from sqlalchemy.orm import Session

from worker import lifecycle
from worker.creation import IdempotencyConflict, schedule
from worker.db.models import Callback, OrgConfig
from worker.validation import NewCallback

log = logging.getLogger(__name__)

REDIALABLE = ("no_answer", "busy", "voicemail", "failed")
_INTERVAL = re.compile(r"^(\d+)([smh])$")
_UNITS = {"s": 1, "m": 60, "h": 3600}
MAX_INSTRUCTIONS = 4000
REDIALS = Counter("callbacks_redials_scheduled", "Redials created by an outcome's policy")


def parse_on(text: str) -> frozenset[str]:
    values = frozenset(v.strip() for v in text.split(",") if v.strip())
    unknown = values - set(REDIALABLE)
    if unknown:
        raise ValueError(
            f"redial on {', '.join(sorted(unknown))}: must be among {', '.join(REDIALABLE)}"
        )
    return values


def parse_intervals(text: str) -> tuple[timedelta, ...]:
    out = []
    for part in (p.strip() for p in text.split(",")):
        match = _INTERVAL.match(part)
        if not match or int(match.group(1)) == 0:
            raise ValueError(f"interval {part!r}: give a positive number and s, m or h (e.g. 30m)")
        out.append(timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)]))
    return tuple(out)


def say_intervals(intervals: tuple[timedelta, ...]) -> str:
    def one(d: timedelta) -> str:
        s = int(d.total_seconds())
        return f"{s // 3600}h" if s % 3600 == 0 else f"{s // 60}m" if s % 60 == 0 else f"{s}s"

    return ",".join(one(d) for d in intervals)


@dataclass(frozen=True)
class RedialPolicy:
    max: int = 0
    """Redials per original callback (0: off)."""
    on: frozenset[str] = frozenset({"no_answer", "busy"})
    intervals: tuple[timedelta, ...] = (timedelta(minutes=30), timedelta(hours=2))

    def interval(self, number: int) -> timedelta:
        """The wait before redial ``number`` (1, 2, ...): the last interval repeats."""
        return self.intervals[min(number, len(self.intervals)) - 1]

    def view(self) -> dict[str, Any]:
        return {
            "max": self.max,
            "on": sorted(self.on),
            "intervals": say_intervals(self.intervals),
        }


OFF = RedialPolicy()


def policy_of(config: OrgConfig | None, defaults: RedialPolicy) -> RedialPolicy:
    if config is None:
        return defaults
    return RedialPolicy(
        max=defaults.max if config.redial_max is None else config.redial_max,
        on=defaults.on if config.redial_on is None else parse_on(config.redial_on),
        intervals=defaults.intervals
        if config.redial_intervals is None
        else parse_intervals(config.redial_intervals),
    )


def redial_number(cb: Callback) -> int:
    number = cb.metadata_.get("redial_number") if isinstance(cb.metadata_, dict) else None
    return number if isinstance(number, int) and not isinstance(number, bool) else 0


def schedule_redial(
    session: Session,
    cb: Callback,
    outcome: str,
    *,
    now: datetime,
    defaults: RedialPolicy,
    lateness: timedelta | None,
) -> Callback | None:
    """The redial ``outcome`` asks for, if the organization's policy does; call it only
    in the transaction that recorded ``outcome`` (the first decisive one)."""
    policy = policy_of(session.get(OrgConfig, cb.organization_id), defaults)
    done = redial_number(cb)
    if outcome not in policy.on or done >= policy.max:
        return None
    number = done + 1
    metadata = {
        **cb.metadata_,
        "redial_of": cb.id,
        "redial_number": number,
        "previous_outcome": outcome,
    }
    note = (
        f"[Redial: attempt {number + 1} to reach this person; the previous call "
        f"({cb.id}) ended as {outcome.replace('_', ' ')}.]"
    )
    instructions = f"{note}\n{cb.instructions}" if cb.instructions else note
    new = NewCallback(
        organization_id=cb.organization_id,
        to_number=cb.to_number,
        from_number=cb.from_number,
        agent_id=cb.agent_id,
        phone_number_id=cb.phone_number_id,
        source_session_id=cb.source_session_id,
        scheduled_at=now + policy.interval(number),
        reason=cb.reason,
        instructions=instructions[:MAX_INSTRUCTIONS],
        summary=cb.summary,
        pipeline_config=cb.pipeline_config,
        metadata=metadata,
        idempotency_key=f"redial:{cb.id}",
    )
    try:
        created = schedule(session, [new], now=now, actor="redial", lateness=lateness)
    except IdempotencyConflict:
        return None  # this callback's redial exists already
    if created.replayed:
        return None
    lifecycle.tell_redial_scheduled(session, cb.id, created[0], now=now)
    REDIALS.inc()
    log.info(
        "callback %s: %s, redial %d of %d scheduled as %s",
        cb.id,
        outcome,
        number,
        policy.max,
        created[0].id,
    )
    return created[0]
