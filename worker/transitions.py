"""Carry out a status change as one conditional write, and record it in the history.

``UPDATE callbacks SET ... WHERE id = :id AND status IN (:expected) [AND guards]``:
the loser of a race changes nothing and gets ``None``; the event row is written in
the same transaction as the change (invariant 6).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, insert, select, update
from sqlalchemy.orm import Session

from worker.db.models import Callback, CallbackEvent
from worker.status import Status, check_transition

log = logging.getLogger(__name__)


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
    rows = session.execute(
        update(Callback)
        .where(Callback.status == expected, *guards)
        .values(status=target, updated_at=now, **(values or {}))
        .returning(Callback.id, Callback.organization_id, Callback.attempts)
        .execution_options(synchronize_session=False)
    ).all()
    ids = [r.id for r in rows]
    record(session, ids, expected, target, now, actor, detail)
    for r in rows:
        _log(
            r.id,
            r.organization_id,
            expected,
            target,
            actor,
            {"attempt": r.attempts, **(detail or {})},
        )
    return ids


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
        "callback %s: %s -> %s by %s",
        callback_id,
        expected,
        target,
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
