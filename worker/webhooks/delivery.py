"""Delivering the outbox: which deliveries are due (fairly per endpoint, in order per
callback), and what an attempt's answer does to its delivery and its endpoint.

The database is the source of truth: a delivery is due when its ``next_attempt_at`` has
come; the sweep hands due ones to workers under a lease, so a worker killed mid-delivery
loses nothing (the lease runs out and the sweep hands it out again: at least once, with
the same ``webhook-id``, so receivers deduplicate).

Order per callback: a later event of a callback waits while an earlier one to the same
endpoint is still pending (retrying). Chosen over a sequence number alone because a
receiver then needs no reordering buffer: what it gets is in order (the sequence number
is still kept, and shown in the delivery log). A delivery that finally failed no longer
holds the later ones back.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import Session, aliased

from worker.db.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent
from worker.serializer import dumps, rfc3339
from worker.webhooks.endpoints import signing_secrets
from worker.webhooks.outbox import DELIVERED, FAILED, PENDING

log = logging.getLogger(__name__)

RETRY_DELAYS = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
)
"""After the first attempt (sent at once) fails, the waits before the next ones; after
the last, the delivery is ``failed`` (Svix's schedule: 8 attempts over about a day)."""
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
DISABLE_AFTER = timedelta(days=5)
"""An endpoint that has failed every attempt for this long is disabled."""
RETRY_AFTER_STATUSES = frozenset({429, 502, 503, 504})
MAX_RETRY_AFTER = timedelta(hours=10)
AUTOMATIC, MANUAL = "automatic", "manual"


@dataclass(frozen=True)
class Outgoing:
    """One attempt to make: everything needed outside the transaction."""

    delivery_id: str
    endpoint_id: str
    url: str
    message_id: str
    body: bytes
    secrets: Sequence[str]
    attempt_number: int
    trigger: str


@dataclass(frozen=True)
class Answer:
    """What an attempt got: an HTTP status (and headers), or an error before one."""

    status: int | None
    headers: Mapping[str, str]
    duration_ms: int
    error: str | None = None


def claim_due(
    session: Session,
    *,
    now: datetime,
    lease: timedelta,
    per_endpoint: int,
    limit: int = 500,
    endpoint_id: str | None = None,
) -> list[str]:
    """Hand out due deliveries: per enabled endpoint (or only ``endpoint_id``), its oldest
    due ones whose earlier events (same callback) are done, up to ``per_endpoint`` in
    flight at once; each leased until ``now + lease``. A dead endpoint fills only its own
    slots."""
    d = WebhookDelivery
    earlier = aliased(WebhookDelivery)
    endpoints: Sequence[str]
    own = endpoint_id is not None
    if endpoint_id is None:
        endpoints = session.scalars(
            select(WebhookEndpoint.id).where(
                WebhookEndpoint.enabled.is_(True),
                exists().where(d.endpoint_id == WebhookEndpoint.id, d.status == PENDING),
            )
        ).all()
    else:  # a worker that just freed one of this endpoint's slots
        endpoints = [endpoint_id]
    claimed: list[str] = []
    for endpoint_id in endpoints:
        # One claimer per endpoint at a time, or two sweeps would both see its slots free
        # (measured: 20 attempts at once to a hanging endpoint capped at 4). NO KEY UPDATE
        # leaves the moves' delivery inserts (a KEY SHARE on the endpoint) unblocked. The
        # sweep skips an endpoint another claimer holds (it is being served); a worker
        # claiming its endpoint's next waits its turn: skipping ended its chain, leaving
        # the slot idle until the next sweep (measured: 0.72 of 4 slots busy).
        mine = session.scalar(
            select(WebhookEndpoint.id)
            .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.enabled.is_(True))
            .with_for_update(skip_locked=not own, key_share=True)
        )
        if mine is None:
            continue
        in_flight = (
            session.scalar(
                select(func.count()).where(
                    d.endpoint_id == endpoint_id, d.status == PENDING, d.leased_until > now
                )
            )
            or 0
        )
        room = min(per_endpoint - in_flight, limit - len(claimed))
        if room <= 0:
            continue
        waiting = exists().where(
            earlier.endpoint_id == d.endpoint_id,
            earlier.callback_id == d.callback_id,
            earlier.sequence < d.sequence,
            earlier.status == PENDING,
        )
        ids = session.scalars(
            select(d.id)
            .where(
                d.endpoint_id == endpoint_id,
                d.status == PENDING,
                d.next_attempt_at <= now,
                (d.leased_until.is_(None)) | (d.leased_until <= now),
                ~waiting,
            )
            .order_by(d.next_attempt_at, d.sequence, d.id)
            .limit(room)
            .with_for_update(skip_locked=True, of=d)
        ).all()
        if ids:
            session.execute(
                update(d).where(d.id.in_(ids)).values(leased_until=now + lease, updated_at=now)
            )
            claimed.extend(ids)
    return claimed


def prepare(session: Session, delivery_id: str, *, now: datetime) -> Outgoing | None:
    """The attempt to make for a handed-out delivery (``None``: nothing to send any more:
    delivered, failed, or its endpoint disabled meanwhile)."""
    row = session.execute(
        select(WebhookDelivery, WebhookEndpoint, WebhookEvent)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .where(WebhookDelivery.id == delivery_id)
    ).one_or_none()
    if row is None:
        return None
    delivery, endpoint, event = row
    if delivery.status != PENDING or not endpoint.enabled:
        return None
    return Outgoing(
        delivery_id=delivery.id,
        endpoint_id=endpoint.id,
        url=endpoint.url,
        message_id=event.id,
        body=dumps(event.payload),
        secrets=signing_secrets(endpoint, now),
        attempt_number=delivery.attempts + 1,
        trigger=delivery.next_trigger,
    )


def retry_after(headers: Mapping[str, str], now: datetime) -> timedelta | None:
    """The wait a ``Retry-After`` asks for (seconds or an HTTP date), capped; ``None``
    if absent or unreadable."""
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    value = value.strip()
    wait: timedelta | None
    if value.isdigit():
        wait = timedelta(seconds=int(value))
    else:
        try:
            wait = parsedate_to_datetime(value) - now
        except (TypeError, ValueError):
            return None
    return max(timedelta(0), min(wait, MAX_RETRY_AFTER))


def record_answer(session: Session, out: Outgoing, answer: Answer, *, now: datetime) -> str:
    """Log the attempt and move the delivery (and its endpoint) on; returns the delivery's
    status after it. Only the attempt this worker was handed is recorded: a delivery that
    was resolved meanwhile (a redelivered duplicate) is logged and left as it is."""
    delivery = session.get(WebhookDelivery, out.delivery_id, with_for_update=True)
    # The endpoint's row is locked only when this answer changes it (a failure; a success
    # after failures): a success to a healthy endpoint leaves it free for the sibling
    # slots' claims (measured: waiting for it was 73 % of a busy slot's time).
    endpoint = session.get(WebhookEndpoint, out.endpoint_id)
    if delivery is None or endpoint is None:
        return FAILED
    session.add(
        WebhookAttempt(
            delivery_id=delivery.id,
            attempt_number=out.attempt_number,
            trigger=out.trigger,
            at=now,
            response_status=answer.status,
            duration_ms=answer.duration_ms,
            error=answer.error,
        )
    )
    if delivery.status != PENDING:
        return delivery.status
    status = answer.status
    delivery.attempts = max(delivery.attempts, out.attempt_number)
    delivery.last_response_status = status
    delivery.leased_until = None
    delivery.next_trigger = AUTOMATIC
    delivery.updated_at = now
    if status is not None and 200 <= status < 300:
        delivery.status, delivery.next_attempt_at = DELIVERED, None
        if endpoint.failing_since is not None:
            _lock(session, endpoint).failing_since = None
        return DELIVERED
    _lock(session, endpoint)
    if endpoint.failing_since is None:
        endpoint.failing_since = now
    if status == 410:
        _disable(endpoint, f"the endpoint answered 410 Gone at {now.isoformat()}", now)
        delivery.status, delivery.next_attempt_at = FAILED, None
        return FAILED
    if now - endpoint.failing_since >= DISABLE_AFTER:
        since = endpoint.failing_since.isoformat()
        _disable(endpoint, f"every delivery failed since {since}", now)
    wait = retry_after(answer.headers, now) if status in RETRY_AFTER_STATUSES else None
    if delivery.attempts >= MAX_ATTEMPTS:
        delivery.status, delivery.next_attempt_at = FAILED, None
        log.warning(
            "webhook delivery %s (callback %s) failed after %d attempts",
            delivery.id,
            delivery.callback_id,
            delivery.attempts,
        )
        return FAILED
    if wait is None:
        wait = RETRY_DELAYS[min(delivery.attempts, MAX_ATTEMPTS - 1) - 1]
    delivery.next_attempt_at = now + wait
    return PENDING


def _lock(session: Session, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    """``endpoint`` locked (its latest committed values) for this transaction to change."""
    session.refresh(endpoint, with_for_update={"key_share": True})
    return endpoint


def _disable(endpoint: WebhookEndpoint, reason: str, now: datetime) -> None:
    endpoint.enabled, endpoint.disabled_reason, endpoint.updated_at = False, reason, now
    log.warning("webhook endpoint %s disabled: %s", endpoint.id, reason)


class EndpointDisabled(ValueError):
    """A redeliver to a disabled endpoint: nothing would be sent."""


def redeliver(
    session: Session, delivery_id: str, *, organization_id: str | None, now: datetime
) -> WebhookDelivery | None:
    """Send a delivery again now (whatever its status), logged as a ``manual`` attempt;
    a failed one gets a full set of attempts again."""
    if "\x00" in delivery_id:  # no row holds NUL (PostgreSQL refuses it): not found
        return None
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None or (
        organization_id is not None and delivery.organization_id != organization_id
    ):
        return None
    endpoint = session.get(WebhookEndpoint, delivery.endpoint_id)
    if endpoint is None or not endpoint.enabled:
        raise EndpointDisabled(
            f"webhook endpoint {delivery.endpoint_id} is disabled "
            f"({endpoint.disabled_reason if endpoint else 'removed'}); enable it first"
        )
    if delivery.status != PENDING:
        delivery.attempts = 0
    delivery.status, delivery.next_attempt_at, delivery.leased_until = PENDING, now, None
    delivery.next_trigger, delivery.updated_at = MANUAL, now
    session.flush()
    return delivery


def delivery_view(delivery: WebhookDelivery, attempts: Sequence[WebhookAttempt]) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "endpoint_id": delivery.endpoint_id,
        "event_id": delivery.event_id,
        "event": delivery.event_type,
        "callback_id": delivery.callback_id,
        "sequence": delivery.sequence,
        "status": delivery.status,
        "next_attempt_at": rfc3339(delivery.next_attempt_at),
        "created_at": rfc3339(delivery.created_at),
        "updated_at": rfc3339(delivery.updated_at),
        "attempts": [
            {
                "attempt_number": a.attempt_number,
                "trigger": a.trigger,
                "at": rfc3339(a.at),
                "response_status": a.response_status,
                "duration_ms": a.duration_ms,
                "error": a.error,
            }
            for a in attempts
        ],
    }
