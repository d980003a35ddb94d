"""The delivery log: deliveries newest first, filtered, a page at a time (keyset cursor)."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from worker.db.models import WebhookAttempt, WebhookDelivery
from worker.webhooks.delivery import delivery_view


class BadCursor(ValueError):
    """A cursor this API did not hand out."""


@dataclass(frozen=True)
class Filters:
    endpoint_id: str | None = None
    event: str | None = None
    status: str | None = None
    callback_id: str | None = None


def encode_cursor(created_at: datetime, delivery_id: str) -> str:
    raw = f"{created_at.isoformat()}|{delivery_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, delivery_id = raw.split("|", 1)
        created_at = datetime.fromisoformat(at)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadCursor("cursor: not a cursor from a previous page") from None
    if created_at.tzinfo is None or not delivery_id:
        raise BadCursor("cursor: not a cursor from a previous page")
    return created_at, delivery_id


def list_deliveries(
    session: Session,
    organization_id: str,
    filters: Filters,
    *,
    cursor: str | None = None,
    limit: int = 25,
) -> dict[str, Any]:
    """``{"deliveries": [...], "next_cursor": ...}`` (``None`` on the last page)."""
    d = WebhookDelivery
    query = select(d).where(d.organization_id == organization_id)
    for column, value in (
        (d.endpoint_id, filters.endpoint_id),
        (d.event_type, filters.event),
        (d.status, filters.status),
        (d.callback_id, filters.callback_id),
    ):
        if value is not None and "\x00" in value:
            # A value no row can hold (PostgreSQL text refuses NUL) matches nothing, as any
            # other unknown id does, instead of a database error (found by schemathesis).
            return {"deliveries": [], "next_cursor": None}
        if value is not None:
            query = query.where(column == value)
    if cursor is not None:
        query = query.where(tuple_(d.created_at, d.id) < tuple_(*decode_cursor(cursor)))
    rows = list(session.scalars(query.order_by(d.created_at.desc(), d.id.desc()).limit(limit + 1)))
    page, more = rows[:limit], len(rows) > limit
    attempts: dict[str, list[WebhookAttempt]] = {row.id: [] for row in page}
    if page:
        for attempt in session.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id.in_(list(attempts)))
            .order_by(WebhookAttempt.id)
        ):
            attempts[attempt.delivery_id].append(attempt)
    last = page[-1] if more else None
    return {
        "deliveries": [delivery_view(row, attempts[row.id]) for row in page],
        "next_cursor": None if last is None else encode_cursor(last.created_at, last.id),
    }
