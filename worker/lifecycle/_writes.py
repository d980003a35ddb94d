"""Carry out a status change as one conditional write, and record it in the history.

``UPDATE callbacks SET ... WHERE id = :id AND status IN (:expected) [AND guards]``:
the loser of a race changes nothing and gets ``None``; the event row is written in
the same transaction as the change (invariant 6).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import lru_cache
from typing import Any, NamedTuple, Protocol

from sqlalchemy import (
    ColumnElement,
    Integer,
    String,
    Table,
    bindparam,
    column,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Update
from sqlalchemy.sql.selectable import TableValuedAlias

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


@dataclass(frozen=True)
class Change:
    """What one move writes: from ``expected`` to ``target`` (the same status: a change
    within it), ``values`` set, only where ``guards`` hold; by ``actor`` at ``now``, with
    ``detail`` in the history."""

    expected: Status
    target: Status
    now: datetime
    actor: str
    detail: Mapping[str, Any] | None = None
    values: Mapping[str, Any] = field(default_factory=dict)
    guards: Sequence[ColumnElement[bool]] = ()

    def __post_init__(self) -> None:
        if self.target != self.expected:
            check_transition(self.expected, self.target)

    def update(self, *where: ColumnElement[bool], **values: Any) -> Update:
        """``UPDATE callbacks SET ... WHERE <where> AND status = :expected AND <guards>``."""
        return (
            update(Callback)
            .where(*where, Callback.status == self.expected, *self.guards)
            .values(status=self.target, updated_at=self.now, **self.values, **values)
            .execution_options(synchronize_session=False)
        )

    def describe(self) -> str:
        """``scheduled -> dispatching``; a write that keeps the status is an event within
        it (an attempt starting), named as such rather than as ``dispatching ->
        dispatching``."""
        if self.target != self.expected:
            return f"{self.expected} -> {self.target}"
        event = (self.detail or {}).get("event")
        return f"{event} ({self.target})" if event else f"updated ({self.target})"

    def history(self, attempt: int | None = None) -> dict[str, Any]:
        return {**({} if attempt is None else {"attempt": attempt}), **(self.detail or {})}


def transition(session: Session, callback_id: str, change: Change) -> Callback | None:
    """Make ``change`` to one callback; ``None`` if it was not there to make."""
    stmt = (
        change.update(Callback.id == callback_id)
        .returning(Callback)
        # populate_existing: a row already loaded in this session takes the new values.
        .execution_options(populate_existing=True)
    )
    row = session.execute(stmt).scalar_one_or_none()
    if row is None:
        return None
    detail = change.history(row.attempts)
    record(session, [callback_id], change.expected, change.target, change.now, change.actor, detail)
    _log(row.id, row.organization_id, change, detail)
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


def bulk_transition(session: Session, change: Change) -> list[Moved]:
    """Make ``change`` to every row its guards select; returns what moved."""
    rows = session.execute(
        change.update().returning(Callback.id, Callback.organization_id, Callback.attempts)
    ).all()
    moved = [Moved(r.id, r.organization_id) for r in rows]
    c = change
    record(session, [m.id for m in moved], c.expected, c.target, c.now, c.actor, c.detail)
    _log_many(moved, change)
    return moved


def record_moved(session: Session, rows: Sequence[_AttemptedIn], change: Change) -> None:
    """History and log lines for ``rows`` that a write of the caller's own moved by
    ``change`` (each row: id, organization_id, attempts): one INSERT and one log line per
    attempt number (starting a dispatch batch's attempts: one of each, not one per row)."""
    _record_by_attempt(session, rows, change, log_them=True)


class RowChange(NamedTuple):
    id: str
    attempt: int
    """The attempt the change is for: a row on another attempt is left alone."""
    values: Mapping[str, Any]
    """Columns set to this row's own values (the same columns for every row of a call)."""


def transition_each(session: Session, rows: Sequence[RowChange], change: Change) -> list[str]:
    """``transition`` for several callbacks, each with values of its own and guarded by its
    own attempt number, in one write; returns the ids that moved.

    On PostgreSQL one ``UPDATE ... FROM unnest(...)``: writing the outcomes of a group of
    dials row by row was a third of a worker's time (tests/perf). Elsewhere, row by row.
    """
    if not rows:
        return []
    if session.get_bind().dialect.name != "postgresql":
        return [
            r.id
            for r in rows
            if transition(
                session,
                r.id,
                replace(
                    change,
                    values={**change.values, **r.values},
                    guards=[*change.guards, Callback.attempts == r.attempt],
                ),
            )
            is not None
        ]
    keys = tuple(sorted(rows[0].values))
    each = _unnest(keys)
    params = {
        "change_id": [r.id for r in rows],
        "change_attempt": [r.attempt for r in rows],
        **{f"change_{key}": [r.values[key] for r in rows] for key in keys},
    }
    moved = session.execute(
        change.update(
            Callback.id == each.c.id,
            Callback.attempts == each.c.attempt,
            **{key: each.c[key] for key in keys},
        ).returning(Callback.id, Callback.organization_id, Callback.attempts),
        params,
    ).all()
    _record_by_attempt(session, moved, change, log_them=True)
    return [row.id for row in moved]


@lru_cache(maxsize=16)
def _unnest(keys: tuple[str, ...]) -> TableValuedAlias:
    """``unnest(:change_id, :change_attempt, :change_<key>...) AS change(id, attempt, ...)``:
    one array parameter per column, so the statement is the same text for any number of
    rows and SQLAlchemy compiles it once. A ``VALUES`` list with the rows in it was a new
    statement each time: compiling it was half of writing a group's outcomes (tests/perf).
    """
    columns = Callback.__table__.c
    names = ("id", "attempt", *keys)
    types: dict[str, Any] = {"id": String(), "attempt": Integer()}
    # Unbounded text, not the column's varchar(n): an explicit cast to varchar(n) would
    # cut a value that is too long, where the column's own check refuses it.
    types |= {
        key: String() if isinstance(columns[key].type, String) else columns[key].type
        for key in keys
    }
    arrays = [bindparam(f"change_{name}", type_=ARRAY(types[name])) for name in names]
    return (
        func.unnest(*arrays)
        .table_valued(*(column(name, types[name]) for name in names), name="change")
        .render_derived()
    )


class _Attempted(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def attempts(self) -> int: ...


class _AttemptedIn(_Attempted, Protocol):
    @property
    def organization_id(self) -> str: ...


def _record_by_attempt(
    session: Session, rows: Sequence[_AttemptedIn], change: Change, *, log_them: bool = False
) -> None:
    """History for moved rows: one INSERT per attempt number (nearly always one); with
    ``log_them``, one log line per attempt number too, naming every id."""
    by_attempt: dict[int, list[_AttemptedIn]] = defaultdict(list)
    for row in rows:
        by_attempt[row.attempts].append(row)
    c = change
    for attempt, group in by_attempt.items():
        ids = [row.id for row in group]
        record(session, ids, c.expected, c.target, c.now, c.actor, c.history(attempt))
        if log_them:
            _log_many([Moved(row.id, row.organization_id) for row in group], c, attempt)


def _log_many(moved: Sequence[Moved], change: Change, attempt: int | None = None) -> None:
    if not moved:
        return
    ids = [m.id for m in moved]
    # One line per batch (a line per row was ~20 % of a claim, and ~6 % of a drain's
    # outcome writes); it names every id, so each move stays findable by callback id.
    log.info(
        "%d %s: %s by %s (%s)",
        len(moved),
        "callback" if len(moved) == 1 else "callbacks",
        change.describe(),
        change.actor,
        ", ".join(ids),
        extra={
            "callback_ids": ids,
            "organization_ids": sorted({m.organization_id for m in moved}),
            **({} if attempt is None else {"attempt": attempt}),
            "from_status": str(change.expected),
            "to_status": str(change.target),
            "actor": change.actor,
            "why": dict(change.detail or {}),
        },
    )


class Moved(NamedTuple):
    id: str
    organization_id: str


def _log(callback_id: str, organization_id: str, change: Change, detail: Mapping[str, Any]) -> None:
    # Logged inside the transaction: if its commit then fails, the failure is logged next.
    log.info(
        "callback %s: %s by %s",
        callback_id,
        change.describe(),
        change.actor,
        extra={
            "callback_id": callback_id,
            "organization_id": organization_id,
            "attempt": detail.get("attempt"),
            "from_status": str(change.expected),
            "to_status": str(change.target),
            "actor": change.actor,
            "why": {k: v for k, v in detail.items() if k != "attempt" and v is not None},
        },
    )
