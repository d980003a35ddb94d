"""POST cancel and dispatch: every status and action, bodies, history, the dispatch message."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.integration.api.conftest import NOW, Keys, bearer
from tests.support.broker import queued_dispatches
from tests.support.factories import T0, make_callback
from tests.support.history import events
from worker.db.models import Callback
from worker.serializer import callback_view, rfc3339
from worker.status import Status

OTHERS = [Status.DISPATCHING, Status.DISPATCHED, Status.FAILED]


def row(sessions: sessionmaker[Session], callback_id: str) -> Callback:
    with sessions() as s:
        cb = s.get(Callback, callback_id)
        assert cb is not None
        return cb


# --- cancel ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({}, None),
        ({"json": {}}, None),
        ({"content": b""}, None),
        ({"json": {"reason": "customer asked"}}, "customer asked"),
        ({"json": {"reason": "r" * 500}}, "r" * 500),
    ],
)
def test_cancel_scheduled(
    client: TestClient,
    keys: Keys,
    pg_sessions: sessionmaker[Session],
    kwargs: dict[str, object],
    reason: str | None,
) -> None:
    with pg_sessions.begin() as s:
        cb = make_callback(s)
    r = client.post(f"/v1/callbacks/{cb.id}/cancel", headers=bearer(keys.a), **kwargs)  # type: ignore[arg-type]
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "cancelled"
    assert body["cancelled_at"] == rfc3339(NOW)
    assert body["updated_at"] == rfc3339(NOW)
    assert body == callback_view(row(pg_sessions, cb.id))
    last = events(pg_sessions, cb.id)[-1]
    assert (last.from_status, last.to_status) == ("scheduled", "cancelled")
    assert last.actor == f"api:{keys.a_id}"
    assert last.detail["reason"] == reason


def test_cancel_cancelled_returns_it_unchanged(
    client: TestClient, keys: Keys, pg_sessions: sessionmaker[Session]
) -> None:
    with pg_sessions.begin() as s:
        cb = make_callback(s, Status.CANCELLED)
    before = callback_view(row(pg_sessions, cb.id))
    n = len(events(pg_sessions, cb.id))
    r = client.post(f"/v1/callbacks/{cb.id}/cancel", headers=bearer(keys.a), json={})
    assert r.status_code == 200
    assert r.json() == before
    assert len(events(pg_sessions, cb.id)) == n


@pytest.mark.parametrize("status", OTHERS)
def test_cancel_other_status_is_409_naming_it(
    client: TestClient, keys: Keys, pg_sessions: sessionmaker[Session], status: Status
) -> None:
    with pg_sessions.begin() as s:
        cb = make_callback(s, status)
    before = callback_view(row(pg_sessions, cb.id))
    r = client.post(f"/v1/callbacks/{cb.id}/cancel", headers=bearer(keys.a), json={})
    assert r.status_code == 409
    assert r.json()["code"] == "CONFLICT"
    assert str(status) in r.json()["error"]
    assert callback_view(row(pg_sessions, cb.id)) == before


@pytest.mark.parametrize(
    "content",
    [
        b"{",
        b"not json",
        b'{"reason": "' + b"x" * 501 + b'"}',
        b'{"reason": null}',
        b'{"reason": 7}',
        b"[]",
        b'"reason"',
        b"null",
    ],
)
def test_cancel_bad_body_is_400_and_changes_nothing(
    client: TestClient, keys: Keys, pg_sessions: sessionmaker[Session], content: bytes
) -> None:
    with pg_sessions.begin() as s:
        cb = make_callback(s)
    r = client.post(
        f"/v1/callbacks/{cb.id}/cancel",
        headers={**bearer(keys.a), "Content-Type": "application/json"},
        content=content,
    )
    assert r.status_code == 400
    assert r.json()["code"] == "VALIDATION_ERROR"
    assert set(r.json()) == {"error", "code"}
    assert row(pg_sessions, cb.id).status == Status.SCHEDULED


# --- dispatch -------------------------------------------------------------------------


def test_dispatch_scheduled_now_whatever_scheduled_at(
    client: TestClient, keys: Keys, pg_sessions: sessionmaker[Session], api_redis_url: str
) -> None:
    with pg_sessions.begin() as s:
        cb = make_callback(s, scheduled_at=T0 + timedelta(days=30))
    r = client.post(f"/v1/callbacks/{cb.id}/dispatch", headers=bearer(keys.a), json={})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "dispatching"
    assert r.json() == callback_view(row(pg_sessions, cb.id))
    stored = row(pg_sessions, cb.id)
    assert stored.lease_expires_at == NOW + timedelta(seconds=300)
    assert stored.expires_at == NOW + timedelta(hours=4), "an operator's now restarts expiry"
    assert stored.attempt_in_flight is False
    assert stored.dispatch_round == 1
    assert queued_dispatches(api_redis_url) == [("callbacks.dispatch_claimed", [[cb.id]])]
    last = events(pg_sessions, cb.id)[-1]
    assert (last.from_status, last.to_status, last.actor) == (
        "scheduled",
        "dispatching",
        f"api:{keys.a_id}",
    )


def test_dispatch_failed_is_an_operators_retry_with_a_new_idempotency_key(
    client: TestClient, keys: Keys, pg_sessions: sessionmaker[Session], api_redis_url: str
) -> None:
    with pg_sessions.begin() as s:
        cb = make_callback(s, Status.FAILED, attempts=5, failure_cause="gave up")
    old_key = row(pg_sessions, cb.id).idempotency_key
    r = client.post(f"/v1/callbacks/{cb.id}/dispatch", headers=bearer(keys.a))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "dispatching"
    assert r.json()["failure_cause"] is None
    stored = row(pg_sessions, cb.id)
    assert stored.dispatch_round == 2
    assert stored.expires_at == NOW + timedelta(hours=4)
    assert stored.idempotency_key != old_key
    assert stored.attempt_in_flight is False
    assert stored.lease_expires_at == NOW + timedelta(seconds=300)
    assert queued_dispatches(api_redis_url) == [("callbacks.dispatch_claimed", [[cb.id]])]
    last = events(pg_sessions, cb.id)[-1]
    assert (last.from_status, last.to_status) == ("failed", "dispatching")
    assert last.detail["retry_of"] == "gave up"


@pytest.mark.parametrize("status", [Status.DISPATCHING, Status.DISPATCHED, Status.CANCELLED])
def test_dispatch_other_status_is_409_naming_it(
    client: TestClient,
    keys: Keys,
    pg_sessions: sessionmaker[Session],
    api_redis_url: str,
    status: Status,
) -> None:
    with pg_sessions.begin() as s:
        cb = make_callback(s, status)
    before = callback_view(row(pg_sessions, cb.id))
    r = client.post(f"/v1/callbacks/{cb.id}/dispatch", headers=bearer(keys.a), json={})
    assert r.status_code == 409
    assert r.json()["code"] == "CONFLICT"
    assert str(status) in r.json()["error"]
    assert callback_view(row(pg_sessions, cb.id)) == before
    assert queued_dispatches(api_redis_url) == []


@pytest.mark.parametrize("action", ["cancel", "dispatch"])
def test_unknown_id_is_404(client: TestClient, keys: Keys, action: str) -> None:
    r = client.post(f"/v1/callbacks/cb_nope/{action}", headers=bearer(keys.a), json={})
    assert r.status_code == 404
    assert r.json() == {"error": "Callback not found", "code": "NOT_FOUND"}
