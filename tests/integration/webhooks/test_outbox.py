"""The outbox: every move a customer hears about writes its event once, in the move's own
transaction, and only for organizations with an enabled endpoint that wants it."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.support.factories import T0, make_callback
from worker import lifecycle
from worker.db.models import Callback, WebhookDelivery, WebhookEvent
from worker.lifecycle import Placed
from worker.serializer import callback_view, rfc3339
from worker.status import Status
from worker.webhooks.endpoints import create_endpoint

NOW = T0 + timedelta(minutes=1)


def _endpoint(session: Session, org: str = "org_a", events: list[str] | None = None) -> str:
    return create_endpoint(
        session,
        organization_id=org,
        url="http://127.0.0.1:9/hook",
        events=events or [],
        now=T0 - timedelta(days=1),
    ).id


def _events(session: Session, callback_id: str) -> list[WebhookEvent]:
    return list(
        session.scalars(
            select(WebhookEvent)
            .where(WebhookEvent.callback_id == callback_id)
            .order_by(WebhookEvent.sequence)
        )
    )


def _in_flight(session: Session) -> str:
    return make_callback(session, Status.DISPATCHING, attempts=1, attempt_in_flight=True).id


def test_each_told_move_writes_one_event_with_the_callback_as_served(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        endpoint_id = _endpoint(session)
        placed = _in_flight(session)
        lifecycle.record_placed(
            session, [Placed(placed, 1, "sess_1")], now=NOW, actor="t", detail={"http": 201}
        )
        failed = _in_flight(session)
        lifecycle.fail_attempt(
            session, failed, 1, cause="bad number", now=NOW, actor="t", detail={}
        )
        cancelled = make_callback(session).id
        lifecycle.cancel(
            session, cancelled, organization_id="org_a", now=NOW, actor="t", reason="asked"
        )
        deferred = make_callback(session, Status.DISPATCHING).id
        lifecycle.defer(
            session,
            deferred,
            until=NOW + timedelta(hours=8),
            expires_at=None,
            now=NOW,
            actor="t",
            detail={"why": "window closed"},
        )
        expired = make_callback(session, Status.DISPATCHING, expires_at=NOW).id
        lifecycle.expire(session, [expired], now=NOW, actor="t")
        unknown = make_callback(
            session, Status.DISPATCHING, attempts=1, attempt_in_flight=True, lease_expires_at=NOW
        ).id
        lifecycle.fail_unknown(session, unknown, 1, cause="outcome unknown: x", now=NOW, actor="t")

    expected = {
        placed: ("callback.dispatched", "dispatching", {"http": 201}),
        failed: ("callback.failed", "dispatching", {"cause": "bad number"}),
        cancelled: ("callback.cancelled", "scheduled", {"reason": "asked"}),
        deferred: ("callback.deferred", "dispatching", {"why": "window closed"}),
        expired: ("callback.failed", "dispatching", {"cause": "expired"}),
        unknown: ("callback.failed", "dispatching", {"cause": "outcome unknown: x"}),
    }
    with sessions() as session:
        for callback_id, (event_type, previous, detail) in expected.items():
            created, told = _events(session, callback_id)
            assert created.type == "callback.scheduled"
            assert created.sequence == 1
            assert told.type == event_type
            assert told.sequence == 2
            assert set(told.payload) == {"type", "timestamp", "data"}
            assert told.payload["type"] == event_type
            assert told.payload["timestamp"] == rfc3339(NOW)
            data = told.payload["data"]
            assert set(data) == {"callback", "previous_status", "detail"}
            assert data["previous_status"] == previous
            assert data["detail"] == detail
            cb = session.get(Callback, callback_id)
            assert cb is not None
            assert data["callback"] == callback_view(cb)
            deliveries = list(
                session.scalars(select(WebhookDelivery).where(WebhookDelivery.event_id == told.id))
            )
            assert [(d.endpoint_id, d.status, d.sequence) for d in deliveries] == [
                (endpoint_id, "pending", 2)
            ]


def test_nobody_subscribed_nothing_written(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        _endpoint(session, org="org_b")  # another organization's endpoint
        disabled = create_endpoint(
            session,
            organization_id="org_a",
            url="http://127.0.0.1:9/off",
            now=T0,
            enabled=False,
        )
        assert not disabled.enabled
        _endpoint(session, events=["callback.cancelled"])
        placed = _in_flight(session)
        lifecycle.record_placed(
            session, [Placed(placed, 1, "sess_1")], now=NOW, actor="t", detail={}
        )
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(WebhookEvent)) == 0
        assert session.scalar(select(func.count()).select_from(WebhookDelivery)) == 0


def test_a_rolled_back_move_leaves_no_event(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        _endpoint(session)
        callback_id = make_callback(session).id
    session = sessions()
    with session.begin():
        lifecycle.cancel(
            session, callback_id, organization_id="org_a", now=NOW, actor="t", reason=None
        )
        assert len(_events(session, callback_id)) == 2
        session.rollback()  # the transaction fails after the move
    session.close()
    with sessions() as session:
        assert [e.type for e in _events(session, callback_id)] == ["callback.scheduled"]


def test_every_endpoint_that_wants_it_gets_a_delivery(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        everything = _endpoint(session)
        cancels = _endpoint(session, events=["callback.cancelled"])
        callback_id = make_callback(session).id
        lifecycle.cancel(
            session, callback_id, organization_id="org_a", now=NOW, actor="t", reason=None
        )
    with sessions() as session:
        rows = session.execute(
            select(WebhookDelivery.event_type, WebhookDelivery.endpoint_id).where(
                WebhookDelivery.callback_id == callback_id
            )
        ).all()
        assert sorted(rows) == sorted(
            [
                ("callback.scheduled", everything),
                ("callback.cancelled", everything),
                ("callback.cancelled", cancels),
            ]
        )
