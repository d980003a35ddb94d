"""Carry out a status change as one conditional write, and record it in the history.

``UPDATE callbacks SET ... WHERE id = :id AND status IN (:expected) [AND guards]``:
the loser of a race changes nothing and gets ``None``; the event row is written in
the same transaction as the change (invariant 6).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from sqlalchemy import (
    ColumnElement,
    Integer,
    String,
    Table,
    bindparam,
    column,
    insert,
    select,
    update,
)
from sqlalchemy import values as values_list
from sqlalchemy.orm import Session

from worker.db.models import Callback, CallbackEvent
from worker.db.types import JsonDocument, UTCDateTime
from worker.status import Status, check_transition

log = logging.getLogger(__name__)
EVENTS: Table = CallbackEvent.metadata.tables[CallbackEvent.__tablename__]
EVENT_CHUNK = 1000

# Built once: one INSERT ... SELECT over the moved ids (an expanding IN). Per-row inserts
# were a fifth of a claim's time, and rebuilding this statement per call most of the rest
# of record()'s (tests/perf).
_INSERT_EVENTS = insert(EVENTS).from_select(
    ["callback_id", "at", "from_status", "to_status", "actor", "detail"],
    select(
        Callback.id,
        bindparam("at", type_=UTCDateTime()),
        bindparam("from_status", type_=String()),
        bindparam("to_status", type_=String()),
        bindparam("actor", type_=String()),
        bindparam("detail", type_=JsonDocument),
    ).where(Callback.id.in_(bindparam("ids", expanding=True))),
)


def transition(
    session: Session,
    callback_id: str,
    *,
    expected: Status,
    target: Status,
    now: datetime,
    actor: str,
    detail: Mapping[str, Any] | None = None,
    values: Mapping[str, Any] | None = None,
    guards: Sequence[ColumnElement[bool]] = (),
) -> Callback | None:
    """Move one callback from ``expected`` to ``target``; ``None`` if it was not there.

    ``target == expected`` is a guarded change within a status (starting an attempt).
    """
    if target != expected:
        check_transition(expected, target)
    stmt = (
        update(Callback)
        .where(Callback.id == callback_id, Callback.status == expected, *guards)
        .values(status=target, updated_at=now, **(values or {}))
        .returning(Callback)
        # populate_existing: a row already loaded in this session takes the new values.
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    row = session.execute(stmt).scalar_one_or_none()
    if row is None:
        return None
    detail = {"attempt": row.attempts, **(detail or {})}
    record(session, [callback_id], expected, target, now, actor, detail)
    _log(callback_id, row.organization_id, expected, target, actor, detail)
    return row


def record(
    session: Session,
    callback_ids: Sequence[str],
    from_status: Status | None,
    to_status: Status,
    now: datetime,
    actor: str,
    detail: Mapping[str, Any] | None = None,
) -> None:
    if not callback_ids:
        return
    params = {
        "at": now,
        "from_status": from_status,
        "to_status": to_status,
        "actor": actor,
        "detail": dict(detail or {}),
    }
    for start in range(0, len(callback_ids), EVENT_CHUNK):
        session.execute(
            _INSERT_EVENTS, {**params, "ids": callback_ids[start : start + EVENT_CHUNK]}
        )


def bulk_transition(
    session: Session,
    *,
    expected: Status,
    target: Status,
    now: datetime,
    actor: str,
    guards: Sequence[ColumnElement[bool]],
    detail: Mapping[str, Any] | None = None,
    values: Mapping[str, Any] | None = None,
) -> list[Moved]:
    """The same conditional write for every row matching ``guards``; returns what moved."""
    check_transition(expected, target)
    rows = session.execute(
        update(Callback)
        .where(Callback.status == expected, *guards)
        .values(status=target, updated_at=now, **(values or {}))
        .returning(Callback.id, Callback.organization_id, Callback.attempts)
        .execution_options(synchronize_session=False)
    ).all()
    moved = [Moved(r.id, r.organization_id) for r in rows]
    ids = [m.id for m in moved]
    record(session, ids, expected, target, now, actor, detail)
    _log_many(moved, expected, target, actor, detail)
    return moved


def transition_many(
    session: Session,
    callback_ids: Sequence[str],
    *,
    expected: Status,
    target: Status,
    now: datetime,
    actor: str,
    detail: Mapping[str, Any] | None = None,
    values: Mapping[str, Any] | None = None,
    guards: Sequence[ColumnElement[bool]] = (),
) -> list[Callback]:
    """``transition`` for several callbacks in one write; returns the rows that moved.

    One UPDATE and one history INSERT per attempt number instead of two statements per
    row: starting the attempts of a dispatch batch (tests/perf).
    """
    if not callback_ids:
        return []
    if target != expected:
        check_transition(expected, target)
    rows = list(
        session.execute(
            update(Callback)
            .where(Callback.id.in_(callback_ids), Callback.status == expected, *guards)
            .values(status=target, updated_at=now, **(values or {}))
            .returning(Callback)
            .execution_options(synchronize_session=False, populate_existing=True)
        ).scalars()
    )
    _record_by_attempt(session, rows, expected, target, now, actor, detail)
    _log_many([Moved(r.id, r.organization_id) for r in rows], expected, target, actor, detail)
    return rows


class RowChange(NamedTuple):
    id: str
    attempt: int
    """The attempt the change is for: a row on another attempt is left alone."""
    values: Mapping[str, Any]
    """Columns set to this row's own values (the same columns for every row of a call)."""


def transition_each(
    session: Session,
    changes: Sequence[RowChange],
    *,
    expected: Status,
    target: Status,
    now: datetime,
    actor: str,
    detail: Mapping[str, Any] | None = None,
    values: Mapping[str, Any] | None = None,
    guards: Sequence[ColumnElement[bool]] = (),
) -> list[str]:
    """``transition`` for several callbacks, each with values of its own and guarded by its
    own attempt number, in one write; returns the ids that moved.

    On PostgreSQL one ``UPDATE ... FROM (VALUES ...)``: writing the outcomes of a group of
    dials row by row was a third of a worker's time (tests/perf). Elsewhere, row by row.
    """
    if not changes:
        return []
    if target != expected:
        check_transition(expected, target)
    if session.get_bind().dialect.name != "postgresql":
        return [
            c.id
            for c in changes
            if transition(
                session,
                c.id,
                expected=expected,
                target=target,
                now=now,
                actor=actor,
                detail=detail,
                values={**(values or {}), **c.values},
                guards=[*guards, Callback.attempts == c.attempt],
            )
            is not None
        ]
    keys = sorted(changes[0].values)
    columns = Callback.__table__.c
    change = values_list(
        column("id", String()),
        column("attempt", Integer()),
        *(column(key, columns[key].type) for key in keys),
        name="change",
    ).data([(c.id, c.attempt, *(c.values[key] for key in keys)) for c in changes])
    rows = session.execute(
        update(Callback)
        .where(
            Callback.id == change.c.id,
            Callback.attempts == change.c.attempt,
            Callback.status == expected,
            *guards,
        )
        .values(
            status=target,
            updated_at=now,
            **(values or {}),
            **{key: change.c[key] for key in keys},
        )
        .returning(Callback.id, Callback.organization_id, Callback.attempts)
        .execution_options(synchronize_session=False)
    ).all()
    _record_by_attempt(session, rows, expected, target, now, actor, detail)
    for row in rows:
        _log(
            row.id,
            row.organization_id,
            expected,
            target,
            actor,
            {"attempt": row.attempts, **(detail or {})},
        )
    return [row.id for row in rows]


class _Attempted(Protocol):
    id: str
    attempts: int


def _record_by_attempt(
    session: Session,
    rows: Sequence[_Attempted],
    expected: Status,
    target: Status,
    now: datetime,
    actor: str,
    detail: Mapping[str, Any] | None,
) -> None:
    """History for moved rows: one INSERT per attempt number (nearly always one)."""
    by_attempt: dict[int, list[str]] = defaultdict(list)
    for row in rows:
        by_attempt[row.attempts].append(row.id)
    for attempt, ids in by_attempt.items():
        record(session, ids, expected, target, now, actor, {"attempt": attempt, **(detail or {})})


def _log_many(
    moved: Sequence[Moved],
    expected: Status,
    target: Status,
    actor: str,
    detail: Mapping[str, Any] | None,
) -> None:
    if not moved:
        return
    ids = [m.id for m in moved]
    # One line per batch (a line per row was ~20 % of a claim); it names every id.
    log.info(
        "%d %s: %s by %s (%s)",
        len(moved),
        "callback" if len(moved) == 1 else "callbacks",
        _change(expected, target, detail),
        actor,
        ", ".join(ids[:5]) + (" ..." if len(ids) > 5 else ""),
        extra={
            "callback_ids": ids,
            "organization_ids": sorted({m.organization_id for m in moved}),
            "from_status": str(expected),
            "to_status": str(target),
            "actor": actor,
            "why": dict(detail or {}),
        },
    )


def _change(expected: Status, target: Status, detail: Mapping[str, Any] | None) -> str:
    """``scheduled -> dispatching``; a write that keeps the status is an event within it
    (an attempt starting), named as such rather than as ``dispatching -> dispatching``."""
    if target != expected:
        return f"{expected} -> {target}"
    event = (detail or {}).get("event")
    return f"{event} ({target})" if event else f"updated ({target})"


class Moved(NamedTuple):
    id: str
    organization_id: str


def _log(
    callback_id: str,
    organization_id: str,
    expected: Status,
    target: Status,
    actor: str,
    detail: Mapping[str, Any],
) -> None:
    # Logged inside the transaction: if its commit then fails, the failure is logged next.
    log.info(
        "callback %s: %s by %s",
        callback_id,
        _change(expected, target, detail),
        actor,
        extra={
            "callback_id": callback_id,
            "organization_id": organization_id,
            "attempt": detail.get("attempt"),
            "from_status": str(expected),
            "to_status": str(target),
            "actor": actor,
            "why": {k: v for k, v in detail.items() if k != "attempt" and v is not None},
        },
    )
