"""The callbacks table: filters, keyset pages newest first, and what a filter matches.

One statement per page, keyset on ``(created_at, id)`` as the API's list, so a page far
down costs what the first does. An organization's viewer walks the organization's
indexes; an operator without an organization filter walks ``ix_callbacks_created``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, func, select, tuple_
from sqlalchemy.orm import Session

from worker.actions import storable
from worker.console.viewers import Viewer
from worker.db.models import Callback
from worker.status import Status

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200

COLUMNS = (
    Callback.id,
    Callback.organization_id,
    Callback.status,
    Callback.to_number,
    Callback.scheduled_at,
    Callback.created_at,
    Callback.source_session_id,
    Callback.attempts,
    Callback.call_outcome,
    Callback.failure_cause,
)


class BadCursor(ValueError):
    """Not a cursor of this table."""


@dataclass(frozen=True)
class Filters:
    """What the table is filtered by; ``None``: not filtered. The query string's names."""

    status: Status | None = None
    organization_id: str | None = None
    """Operators only; an organization's viewer is always scoped to its own."""
    to_number: str | None = None
    id: str | None = None
    source_session_id: str | None = None
    scheduled_after: datetime | None = None
    """Inclusive."""
    scheduled_before: datetime | None = None
    """Exclusive."""

    def query(self) -> dict[str, str]:
        """The filters as query-string values, for links that keep them."""
        out: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            out[f.name] = value.isoformat() if isinstance(value, datetime) else str(value)
        return out

    @property
    def empty(self) -> bool:
        return not self.query()


def conditions(viewer: Viewer, filters: Filters) -> list[ColumnElement[bool]] | None:
    """The WHERE of a filter as seen by ``viewer``; ``None`` when it can match nothing."""
    c = Callback
    where: list[ColumnElement[bool]] = []
    org = viewer.organization_id
    if org is None:
        org = filters.organization_id
    elif filters.organization_id not in (None, org):
        return None
    if org is not None:
        where.append(c.organization_id == org)
    for text in (filters.id, filters.source_session_id, org):
        if text is not None and not storable(text):
            return None
    if filters.status is not None:
        where.append(c.status == filters.status)
    if filters.to_number is not None:
        where.append(c.to_number == filters.to_number)
    if filters.id is not None:
        where.append(c.id == filters.id)
    if filters.source_session_id is not None:
        where.append(c.source_session_id == filters.source_session_id)
    if filters.scheduled_after is not None:
        where.append(c.scheduled_at >= filters.scheduled_after)
    if filters.scheduled_before is not None:
        where.append(c.scheduled_at < filters.scheduled_before)
    return where


def encode_cursor(created_at: datetime, callback_id: str) -> str:
    raw = f"{created_at.isoformat()}|{callback_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, callback_id = raw.split("|", 1)
        created_at = datetime.fromisoformat(at)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadCursor(cursor) from None
    if created_at.tzinfo is None or not callback_id or not storable(callback_id):
        raise BadCursor(cursor)
    return created_at, callback_id


@dataclass(frozen=True)
class Page:
    rows: list[Any]
    next_cursor: str | None


def page(
    conn: Connection | Session,
    viewer: Viewer,
    filters: Filters,
    *,
    cursor: str | None = None,
    limit: int = PAGE_SIZE,
) -> Page:
    """A page of the table, newest first; raises :class:`BadCursor`."""
    where = conditions(viewer, filters)
    position = None if cursor is None else decode_cursor(cursor)
    if where is None:
        return Page([], None)
    query = select(*COLUMNS).where(*where)
    if position is not None:
        query = query.where(tuple_(Callback.created_at, Callback.id) < tuple_(*position))
    query = query.order_by(Callback.created_at.desc(), Callback.id.desc()).limit(limit + 1)
    rows = list(conn.execute(query).all())
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if more else None
    return Page(rows, None if last is None else encode_cursor(last.created_at, last.id))


def count_by_status(session: Session, viewer: Viewer, filters: Filters) -> dict[Status, int]:
    """How many callbacks the filter matches, by status (a bulk action's preview)."""
    where = conditions(viewer, filters)
    counts = dict.fromkeys(Status, 0)
    if where is None:
        return counts
    for status, n in session.execute(
        select(Callback.status, func.count()).where(*where).group_by(Callback.status)
    ):
        counts[Status(status)] = int(n)
    return counts


def matching(
    session: Session, viewer: Viewer, filters: Filters, *, batch: int
) -> Iterator[list[tuple[str, str, Status]]]:
    """``(id, organization_id, status)`` of what the filter matches, a batch at a time,
    newest first; each batch is read when the previous one was handled (keyset)."""
    where = conditions(viewer, filters)
    if where is None:
        return
    position: tuple[datetime, str] | None = None
    while True:
        query = select(Callback.id, Callback.organization_id, Callback.status, Callback.created_at)
        query = query.where(*where)
        if position is not None:
            query = query.where(tuple_(Callback.created_at, Callback.id) < tuple_(*position))
        rows = session.execute(
            query.order_by(Callback.created_at.desc(), Callback.id.desc()).limit(batch)
        ).all()
        if not rows:
            return
        yield [(r.id, r.organization_id, Status(r.status)) for r in rows]
        position = (rows[-1].created_at, rows[-1].id)


def with_org(filters: Filters, organization_id: str | None) -> Filters:
    return replace(filters, organization_id=organization_id)
