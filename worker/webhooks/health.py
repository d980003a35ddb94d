"""How the endpoints are doing, for ``callbacks status`` and the metrics: failing or
disabled endpoints, and each endpoint's pending deliveries and the oldest one's age."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from worker.db.models import WebhookDelivery, WebhookEndpoint
from worker.serializer import rfc3339
from worker.webhooks.outbox import PENDING


def _aware(value: Any, now: datetime) -> datetime | None:
    if isinstance(value, str):  # SQLite aggregates lose the column type
        return datetime.fromisoformat(value).replace(tzinfo=now.tzinfo)
    return value  # type: ignore[no-any-return]


def pending_by_endpoint(session: Session, now: datetime) -> dict[str, tuple[int, float]]:
    """Per endpoint with pending deliveries: how many, and the oldest one's age (s)."""
    rows = session.execute(
        select(WebhookDelivery.endpoint_id, func.count(), func.min(WebhookDelivery.created_at))
        .where(WebhookDelivery.status == PENDING)
        .group_by(WebhookDelivery.endpoint_id)
    ).all()
    out = {}
    for endpoint_id, count, oldest in rows:
        at = _aware(oldest, now)
        age = 0.0 if at is None else max(0.0, (now - at).total_seconds())
        out[endpoint_id] = (int(count), round(age, 3))
    return out


def failing_endpoints(session: Session, now: datetime) -> list[dict[str, Any]]:
    """Endpoints failing (every attempt since ``failing_since``) or disabled, worst first."""
    pending = pending_by_endpoint(session, now)
    endpoints = session.scalars(
        select(WebhookEndpoint)
        .where(or_(WebhookEndpoint.failing_since.is_not(None), WebhookEndpoint.enabled.is_(False)))
        .order_by(WebhookEndpoint.failing_since, WebhookEndpoint.id)
        .limit(50)
    ).all()
    return [
        {
            "id": e.id,
            "organization_id": e.organization_id,
            "url": e.url,
            "enabled": e.enabled,
            "disabled_reason": e.disabled_reason,
            "failing_since": rfc3339(e.failing_since),
            "pending": pending.get(e.id, (0, 0.0))[0],
            "oldest_pending_age_seconds": pending.get(e.id, (0, 0.0))[1],
        }
        for e in endpoints
    ]
