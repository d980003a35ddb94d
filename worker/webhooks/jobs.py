"""The webhook jobs the Celery tasks run: the sweep (hand due deliveries out), one
delivery (prepare in one transaction, send outside any, record in another) and the
retention purge. Plain functions over sessions and a clock."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from prometheus_client import Counter, Histogram
from sqlalchemy import delete, exists, select
from sqlalchemy.orm import Session, sessionmaker

from worker.clock import Clock
from worker.db.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from worker.webhooks import delivery
from worker.webhooks.addresses import NOTHING_ALLOWED, Allowed, Resolver, resolve
from worker.webhooks.outbox import PENDING
from worker.webhooks.sender import send

log = logging.getLogger(__name__)

DELIVERY_RESULTS = Counter(
    "callbacks_webhook_attempts",
    "Webhook delivery attempts by what the delivery became: delivered, pending, failed",
    ["result"],
)
ATTEMPT_SECONDS = Histogram(
    "callbacks_webhook_attempt_duration_seconds",
    "Time one webhook attempt took, answer or error",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 15, 30),
)
PURGE_BATCH = 1000


def sweep(
    sessions: sessionmaker[Session],
    clock: Clock,
    publish: Callable[[Sequence[str]], None],
    *,
    lease: timedelta,
    per_endpoint: int,
) -> int:
    """Hand every due delivery out (claimed under ``lease``, then published)."""
    with sessions.begin() as session:
        ids = delivery.claim_due(session, now=clock.now(), lease=lease, per_endpoint=per_endpoint)
    if ids:
        # Published after the commit; a publish that fails leaves them leased, and the
        # sweep hands them out again once the lease runs out.
        publish(ids)
    return len(ids)


def deliver(
    sessions: sessionmaker[Session],
    clock: Clock,
    delivery_id: str,
    *,
    timeout: float,
    lease: timedelta,
    per_endpoint: int,
    allowed: Allowed = NOTHING_ALLOWED,
    resolver: Resolver = resolve,
) -> int:
    """Deliver ``delivery_id``, then keep the slot it held busy: in the transaction that
    records an answer, claim the endpoint's next due delivery and prepare it, and send it
    too, until none is due or ``timeout`` has passed (so the task ends within two
    timeouts). Returns the attempts made.

    One transaction per attempt (record + claim + prepare), not three: the record holds
    the endpoint's row lock, so the claim in it cannot be skipped as "being served by
    another claimer". Measured (``python -m tests.perf.bench_webhooks``, quiet machine):
    with the claim in a transaction of its own it often found the endpoint locked by a
    sibling slot's record and ended the chain, leaving the slot idle until the next
    sweep: 0.72 of 4 slots busy on average, 80 deliveries/s to one endpoint."""
    started = time.monotonic()
    with sessions.begin() as session:
        out = delivery.prepare(session, delivery_id, now=clock.now())
    made = 0
    while out is not None:
        at = clock.now()
        answer = send(out, at=at, timeout=timeout, allowed=allowed, resolver=resolver)
        ATTEMPT_SECONDS.observe(answer.duration_ms / 1000)
        more = time.monotonic() - started < timeout
        with sessions.begin() as session:
            now = clock.now()
            status = delivery.record_answer(session, out, answer, now=now)
            following = _claim_next(session, out.endpoint_id, now, lease, per_endpoint, more)
        made += 1
        DELIVERY_RESULTS.labels(status).inc()
        log.info(
            "webhook %s attempt %d to %s: %s -> %s",
            out.delivery_id,
            out.attempt_number,
            out.endpoint_id,
            answer.status if answer.status is not None else answer.error,
            status,
            extra={"delivery_id": out.delivery_id, "webhook_id": out.message_id},
        )
        out = following
    return made


def _claim_next(
    session: Session,
    endpoint_id: str,
    now: datetime,
    lease: timedelta,
    per_endpoint: int,
    more: bool,
) -> delivery.Outgoing | None:
    """The endpoint's next due delivery, claimed and prepared (``None``: none, or no time)."""
    if not more:
        return None
    ids = delivery.claim_due(
        session, now=now, lease=lease, per_endpoint=per_endpoint, limit=1, endpoint_id=endpoint_id
    )
    return delivery.prepare(session, ids[0], now=now) if ids else None


def purge(
    sessions: sessionmaker[Session],
    clock: Clock,
    *,
    retention: timedelta,
    batch: int = PURGE_BATCH,
    max_batches: int = 50,
) -> int:
    """Remove events older than ``retention`` (their deliveries and attempts with them), a
    bounded batch per transaction so no lock is held for long; never one still pending to
    an enabled endpoint."""
    cutoff = clock.now() - retention
    removed = 0
    for _ in range(max_batches):
        with sessions.begin() as session:
            # Still to be sent: kept. A pending delivery to a disabled endpoint is not (it
            # is sent only if redelivered), so it does not outlive the retention forever.
            pending = exists().where(
                WebhookDelivery.event_id == WebhookEvent.id,
                WebhookDelivery.status == PENDING,
                WebhookDelivery.endpoint_id.in_(
                    select(WebhookEndpoint.id).where(WebhookEndpoint.enabled.is_(True))
                ),
            )
            ids = session.scalars(
                select(WebhookEvent.id)
                .where(WebhookEvent.created_at < cutoff, ~pending)
                .limit(batch)
            ).all()
            if not ids:
                break
            session.execute(delete(WebhookEvent).where(WebhookEvent.id.in_(ids)))
            removed += len(ids)
    return removed
