"""What a stored platform event does, done once: by the task published after it was
stored, or by the sweep that finds it unprocessed (a crash in between loses nothing).

Each event is processed in one transaction that holds its row (``FOR UPDATE``) and marks
it processed: two processors of one event serialize, and the second finds it done.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from worker import lifecycle
from worker.call_outcome import CallOutcome, classify, signals_of
from worker.clock import Clock
from worker.creation import IdempotencyConflict, schedule
from worker.db.models import Callback, PlatformEvent
from worker.platform_events import metrics
from worker.redials import OFF, RedialPolicy, schedule_redial
from worker.status import Status
from worker.validation import InvalidCallback, parse_new_callbacks

log = logging.getLogger(__name__)

ACTOR = "platform"
REPORT_TYPES = frozenset({"call.report", "call.analysis"})
CALLBACK_FIELDS = (
    "to_number",
    "scheduled_at",
    "reason",
    "instructions",
    "summary",
    "agent_id",
    "phone_number_id",
    "from_number",
    "pipeline_config",
    "metadata",
)
"""What a report's ``scheduled_callback`` may set, in the API's field names."""
KEY_PREFIX = "speko-session:"
RACE_RETRIES = 3


class Result(StrEnum):
    CALLBACK_CREATED = "callback_created"
    CALLBACK_EXISTS = "callback_exists"
    """Another report of the same session created it already."""
    INVALID_CALLBACK = "invalid_callback"
    OUTCOME_RECORDED = "outcome_recorded"
    OUTCOME_KNOWN = "outcome_known"
    """The callback's outcome was already recorded: the first decisive one stands."""
    OUTCOME_UNDECIDED = "outcome_undecided"
    """An event of one of our calls that does not decide its outcome."""
    IGNORED = "ignored"
    """Nothing to do: a type we do not act on, or a session no callback created."""


@dataclass(frozen=True)
class Handled:
    result: Result
    callback_id: str | None = None
    error: str | None = None
    event_type: str = ""


def session_key(session_id: str) -> str:
    """The creation idempotency key that makes "one callback per source session" hold
    under races (the unique index on organization and key); hashed when too long."""
    key = KEY_PREFIX + session_id
    if len(key) <= 128:
        return key
    return KEY_PREFIX + "sha256:" + hashlib.sha256(session_id.encode()).hexdigest()


def callback_from_report(
    session: Session, data: dict[str, Any], *, now: datetime, lateness: timedelta | None
) -> Handled | None:
    """A report's ``scheduled_callback`` object becomes one callback (None: it has none)."""
    asked = data.get("scheduled_callback")
    if not isinstance(asked, dict):
        return None
    org, source = data.get("organization_id"), data.get("session_id")
    if not isinstance(source, str) or not source:
        return Handled(Result.INVALID_CALLBACK, error="data.session_id: missing")
    raw = {k: asked[k] for k in CALLBACK_FIELDS if asked.get(k) is not None}
    raw |= {"organization_id": org, "source_session_id": source}
    raw["idempotency_key"] = session_key(source)
    try:
        new = parse_new_callbacks([("scheduled_callback", raw)])
        created = schedule(session, new, now=now, actor=ACTOR, lateness=lateness)
    except InvalidCallback as exc:
        return Handled(Result.INVALID_CALLBACK, error=str(exc))
    except IdempotencyConflict:
        # A later report of the same session asking something else: the first one stands.
        existing = session.scalar(
            select(Callback.id).where(
                Callback.organization_id == new[0].organization_id,
                Callback.creation_key == new[0].idempotency_key,
            )
        )
        return Handled(Result.CALLBACK_EXISTS, callback_id=existing)
    result = Result.CALLBACK_EXISTS if created.replayed else Result.CALLBACK_CREATED
    return Handled(result, callback_id=created[0].id)


def handle(
    session: Session,
    event_type: str,
    data: dict[str, Any],
    *,
    now: datetime,
    lateness: timedelta | None,
    redials: RedialPolicy = OFF,
) -> Handled:
    created = None
    if event_type in REPORT_TYPES:
        created = callback_from_report(session, data, now=now, lateness=lateness)
    # A report of a call we placed may also ask for a callback: both are done.
    informed = outcome_from_event(
        session, event_type, data, now=now, lateness=lateness, redials=redials
    )
    if created is not None and created.result is not Result.CALLBACK_EXISTS:
        return created
    return informed or created or Handled(Result.IGNORED)


def our_callback(session: Session, data: dict[str, Any]) -> Callback | None:
    """The dispatched callback whose call the event is about: its ``session_id`` or
    ``call_id`` is our ``created_session_id`` AND its organization is the callback's (an
    event of another organization never touches a callback of this one)."""
    org = data.get("organization_id")
    ids = [v for k in ("session_id", "call_id") if isinstance(v := data.get(k), str) and v]
    if not isinstance(org, str) or not ids:
        return None
    return session.scalar(
        select(Callback).where(
            Callback.created_session_id.in_(ids),
            Callback.organization_id == org,
            Callback.status == Status.DISPATCHED,
        )
    )


def outcome_from_event(
    session: Session,
    event_type: str,
    data: dict[str, Any],
    *,
    now: datetime,
    lateness: timedelta | None = None,
    redials: RedialPolicy = OFF,
) -> Handled | None:
    """Record the outcome the event decides for our callback (None: not one of our calls)."""
    cb = our_callback(session, data)
    if cb is None:
        return None
    outcome = classify(signals_of(event_type, data))
    if outcome is CallOutcome.UNKNOWN:
        return Handled(Result.OUTCOME_UNDECIDED, callback_id=cb.id)
    moved = lifecycle.record_call_outcome(
        session, cb.id, outcome.value, now=now, actor=ACTOR, detail={"from": event_type}
    )
    if moved is None:
        return Handled(Result.OUTCOME_KNOWN, callback_id=cb.id)
    metrics.OUTCOMES.labels(outcome.value).inc()
    # In this transaction: the redial exists if and only if this outcome was recorded.
    schedule_redial(session, moved, outcome.value, now=now, defaults=redials, lateness=lateness)
    return Handled(Result.OUTCOME_RECORDED, callback_id=cb.id)


def process_event(
    session: Session,
    webhook_id: str,
    *,
    now: datetime,
    lateness: timedelta | None,
    redials: RedialPolicy = OFF,
) -> Handled | None:
    """Process the stored event ``webhook_id`` unless it is done; None if it was (or is
    not stored)."""
    row = session.scalar(
        select(PlatformEvent)
        .where(PlatformEvent.webhook_id == webhook_id, PlatformEvent.processed_at.is_(None))
        .with_for_update()
    )
    if row is None:
        return None
    data = row.payload.get("data")
    handled = handle(
        session,
        row.type,
        data if isinstance(data, dict) else {},
        now=now,
        lateness=lateness,
        redials=redials,
    )
    row.processed_at = now
    row.result = handled.result.value
    row.error = handled.error
    row.callback_id = handled.callback_id
    return replace(handled, event_type=row.type)


def process(
    sessions: sessionmaker[Session],
    clock: Clock,
    webhook_id: str,
    *,
    lateness: timedelta | None,
    redials: RedialPolicy = OFF,
) -> Handled | None:
    """:func:`process_event` in a transaction of its own. Two events of one session
    racing to create its callback: the unique key fails the loser's transaction, and its
    retry finds the winner's callback."""
    for attempt in range(1, RACE_RETRIES + 1):
        try:
            with sessions.begin() as session:
                handled = process_event(
                    session, webhook_id, now=clock.now(), lateness=lateness, redials=redials
                )
        except IntegrityError:
            if attempt == RACE_RETRIES:
                raise
            continue
        if handled is not None:
            _report(webhook_id, handled)
        return handled
    return None


def _report(webhook_id: str, handled: Handled) -> None:
    event_type = handled.event_type
    metrics.EVENTS.labels(metrics.type_label(event_type), handled.result.value).inc()
    if handled.result is Result.INVALID_CALLBACK:
        log.warning(
            "platform event %s (%s): scheduled_callback refused, nothing created: %s",
            webhook_id,
            event_type,
            handled.error,
        )
    elif handled.callback_id:
        log.info(
            "platform event %s (%s): callback %s %s",
            webhook_id,
            event_type,
            handled.callback_id,
            handled.result.value,
        )


def unprocessed(session: Session, *, received_before: datetime, limit: int) -> list[str]:
    """Stored events nobody processed (their task was lost): oldest first."""
    return list(
        session.scalars(
            select(PlatformEvent.webhook_id)
            .where(
                PlatformEvent.processed_at.is_(None),
                PlatformEvent.received_at <= received_before,
            )
            .order_by(PlatformEvent.received_at)
            .limit(limit)
        )
    )


SWEEP_GRACE = timedelta(seconds=30)
"""An event this young still has its own task coming; older, the sweep takes it."""
SWEEP_BATCH = 500


def sweep(
    sessions: sessionmaker[Session],
    clock: Clock,
    *,
    lateness: timedelta | None,
    redials: RedialPolicy = OFF,
) -> int:
    """Process every stored event left unprocessed for longer than :data:`SWEEP_GRACE`."""
    with sessions.begin() as session:
        ids = unprocessed(session, received_before=clock.now() - SWEEP_GRACE, limit=SWEEP_BATCH)
    done = 0
    for webhook_id in ids:
        if process(sessions, clock, webhook_id, lateness=lateness, redials=redials) is not None:
            done += 1
    if done:
        log.info("platform events: the sweep processed %d left unprocessed", done)
    return done
