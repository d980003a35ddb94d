"""Operations: `callbacks status` names failing endpoints, the metrics show each
endpoint's pending deliveries, and retention removes old events in bounded batches."""

from __future__ import annotations

from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from tests.support.factories import T0, make_callback
from worker import lifecycle
from worker.db.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent
from worker.metrics import StateCollector
from worker.report import render, status_report
from worker.webhooks import delivery, jobs
from worker.webhooks.delivery import Answer
from worker.webhooks.endpoints import create_endpoint

NOW = T0


class At:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


def _failing(session: Session) -> str:
    endpoint = create_endpoint(
        session, organization_id="org_a", url="http://127.0.0.1:9/dead", now=NOW
    )
    make_callback(session)
    (delivery_id,) = delivery.claim_due(
        session, now=NOW, lease=timedelta(minutes=1), per_endpoint=1
    )
    out = delivery.prepare(session, delivery_id, now=NOW)
    assert out is not None
    delivery.record_answer(session, out, Answer(500, {}, 5), now=NOW)
    return endpoint.id


def test_status_and_metrics_show_a_failing_endpoint(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        endpoint_id = _failing(session)
    later = NOW + timedelta(minutes=10)
    with sessions() as session:
        report = status_report(session, later)
    (failing,) = report["webhooks_failing"]
    assert failing["id"] == endpoint_id
    assert failing["pending"] == 1
    assert failing["oldest_pending_age_seconds"] >= 600
    text = render(report)
    assert f"{endpoint_id} org_a http://127.0.0.1:9/dead: failing since" in text
    registry = CollectorRegistry()
    registry.register(StateCollector(sessions, At(later)))
    scraped = generate_latest(registry).decode()
    assert f'callbacks_webhook_pending{{endpoint="{endpoint_id}"}} 1.0' in scraped
    assert f'callbacks_webhook_oldest_pending_age_seconds{{endpoint="{endpoint_id}"}}' in scraped


def test_retention_removes_old_finished_events_only(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        create_endpoint(session, organization_id="org_a", url="http://127.0.0.1:9/x", now=NOW)
        done = make_callback(session).id
        lifecycle.cancel(session, done, organization_id="org_a", now=NOW, actor="t", reason=None)
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.callback_id == done)
            .values(status="delivered")
        )
        waiting = make_callback(session).id
        session.add(
            WebhookAttempt(
                delivery_id=session.scalars(
                    select(WebhookDelivery.id).where(WebhookDelivery.callback_id == done)
                ).first(),
                attempt_number=1,
                trigger="automatic",
                at=NOW,
                response_status=200,
                duration_ms=1,
            )
        )
    later = At(NOW + timedelta(days=31))
    removed = jobs.purge(sessions, later, retention=timedelta(days=30), batch=1)
    assert removed == 2
    with sessions() as session:
        left = session.scalars(select(WebhookEvent.callback_id)).all()
        assert left == [waiting]
        assert session.scalar(select(func.count()).select_from(WebhookAttempt)) == 0
    assert jobs.purge(sessions, At(NOW + timedelta(days=20)), retention=timedelta(days=30)) == 0
    with sessions.begin() as session:  # its endpoint disabled: no longer kept
        session.execute(update(WebhookEndpoint).values(enabled=False))
    assert jobs.purge(sessions, later, retention=timedelta(days=30)) == 1
