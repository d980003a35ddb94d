"""Carry out a status change as one conditional write, and record it in the history.

``UPDATE callbacks SET ... WHERE id = :id AND status IN (:expected) [AND guards]``:
the loser of a race changes nothing and gets ``None``; the event row is written in
the same transaction as the change (invariant 6).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, insert, select, update
from sqlalchemy.orm import Session

from worker.db.models import Callback, CallbackEvent
from worker.status import Status, check_transition


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
        .execution_options(synchronize_session=False)
    )
    row = session.execute(stmt).scalar_one_or_none()
    if row is None:
        return None
    record(
        session,
        [callback_id],
        expected,
        target,
        now,
        actor,
        {"attempt": row.attempts, **(detail or {})},
    )
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
    session.execute(
        insert(CallbackEvent),
        [
            {
                "callback_id": cid,
                "at": now,
                "from_status": from_status,
                "to_status": to_status,
                "actor": actor,
                "detail": dict(detail or {}),
            }
            for cid in callback_ids
        ],
    )


def current_status(session: Session, callback_id: str) -> Status | None:
    value = session.scalar(select(Callback.status).where(Callback.id == callback_id))
    return None if value is None else Status(value)


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
) -> list[str]:
    """The same conditional write for every row matching ``guards``; returns the ids moved."""
    check_transition(expected, target)
    ids = list(
        session.scalars(
            update(Callback)
            .where(Callback.status == expected, *guards)
            .values(status=target, updated_at=now, **(values or {}))
            .returning(Callback.id)
            .execution_options(synchronize_session=False)
        )
    )
    record(session, ids, expected, target, now, actor, detail)
    return ids
