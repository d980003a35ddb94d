"""The outbox: an event row (and one delivery per subscribed endpoint) written in the same
transaction as the lifecycle move it reports, so a rollback takes the event with it and a
commit can never lose it.

Only organizations with an enabled endpoint that wants the event type get rows: with
nobody subscribed a move costs one query on the (small) endpoints table and nothing more.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Table, func, insert, select
from sqlalchemy.orm import Session
from ulid import ULID

from worker.db.models import Callback, WebhookDelivery, WebhookEndpoint, WebhookEvent
from worker.serializer import callback_view, rfc3339


class EventType(StrEnum):
    SCHEDULED = "callback.scheduled"
    DEFERRED = "callback.deferred"
    DISPATCHED = "callback.dispatched"
    FAILED = "callback.failed"
    CANCELLED = "callback.cancelled"
    OUTCOME = "callback.outcome"
    REDIAL_SCHEDULED = "callback.redial_scheduled"


EVENT_TYPES = frozenset(EventType)

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
DELIVERY_STATUSES = (PENDING, DELIVERED, FAILED)


def new_event_id() -> str:
    """The ``webhook-id`` of an event (Standard Webhooks' ``msg_`` prefix)."""
    return "msg_" + str(ULID()).lower()


def new_delivery_id() -> str:
    return "whd_" + str(ULID()).lower()


def wants(events: Sequence[str], event_type: str) -> bool:
    """Whether an endpoint subscribed to ``events`` (empty: all) gets ``event_type``."""
    return not events or event_type in events


def announce(
    session: Session,
    event_type: EventType,
    callback_ids: Sequence[str],
    *,
    previous_status: str | None,
    now: datetime,
    detail: Mapping[str, Any] | None = None,
) -> int:
    """Write ``event_type`` for each of ``callback_ids`` (just moved, in this transaction)
    whose organization has an enabled endpoint that wants it. Returns the events written."""
    if not callback_ids:
        return 0
    orgs = select(Callback.organization_id).where(Callback.id.in_(callback_ids))
    endpoints = session.execute(
        select(WebhookEndpoint.id, WebhookEndpoint.organization_id, WebhookEndpoint.events).where(
            WebhookEndpoint.enabled.is_(True), WebhookEndpoint.organization_id.in_(orgs)
        )
    ).all()
    by_org: dict[str, list[str]] = defaultdict(list)
    for endpoint in endpoints:
        if wants(endpoint.events, event_type):
            by_org[endpoint.organization_id].append(endpoint.id)
    if not by_org:
        return 0
    callbacks = list(
        session.scalars(
            select(Callback)
            .where(Callback.id.in_(callback_ids), Callback.organization_id.in_(list(by_org)))
            .order_by(Callback.id)
            .execution_options(populate_existing=True)
        )
    )
    # The moved rows are locked by this transaction's UPDATE (or new in it), so nobody
    # else can write an event for them until it ends: max + 1 cannot race.
    last = dict(
        session.execute(
            select(WebhookEvent.callback_id, func.max(WebhookEvent.sequence))
            .where(WebhookEvent.callback_id.in_([c.id for c in callbacks]))
            .group_by(WebhookEvent.callback_id)
        ).all()
    )
    timestamp = rfc3339(now)
    events: list[dict[str, Any]] = []
    deliveries: list[dict[str, Any]] = []
    for cb in callbacks:
        event_id, sequence = new_event_id(), (last.get(cb.id) or 0) + 1
        payload = {
            "type": str(event_type),
            "timestamp": timestamp,
            "data": {
                "callback": callback_view(cb),
                "previous_status": previous_status,
                "detail": dict(detail or {}),
            },
        }
        events.append(
            {
                "id": event_id,
                "organization_id": cb.organization_id,
                "callback_id": cb.id,
                "type": str(event_type),
                "sequence": sequence,
                "created_at": now,
                "payload": payload,
            }
        )
        for endpoint_id in by_org[cb.organization_id]:
            deliveries.append(
                {
                    "id": new_delivery_id(),
                    "event_id": event_id,
                    "endpoint_id": endpoint_id,
                    "organization_id": cb.organization_id,
                    "callback_id": cb.id,
                    "event_type": str(event_type),
                    "sequence": sequence,
                    "status": PENDING,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "next_trigger": "automatic",
                    "created_at": now,
                    "updated_at": now,
                }
            )
    # RETURNING makes SQLAlchemy batch the rows into multi-row INSERTs ("insertmanyvalues",
    # a cached statement); without it psycopg sends one INSERT per row (~2x the cost, per
    # event in a batch of 50).
    session.execute(_INSERT_EVENTS, events).all()
    session.execute(_INSERT_DELIVERIES, deliveries).all()
    return len(events)


_EVENTS: Table = WebhookEvent.metadata.tables[WebhookEvent.__tablename__]
_DELIVERIES: Table = WebhookDelivery.metadata.tables[WebhookDelivery.__tablename__]
_INSERT_EVENTS = insert(_EVENTS).returning(_EVENTS.c.id)
_INSERT_DELIVERIES = insert(_DELIVERIES).returning(_DELIVERIES.c.id)
