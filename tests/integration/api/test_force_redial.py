"""Re-dispatching a callback whose last outcome is unknown needs ``{"force": true}``
(issue 17 item 3): its call may have been placed, and a new dispatch round has a new
Idempotency-Key, so following the runbook blindly would call the person twice."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.integration.api.conftest import Keys, bearer
from tests.integration.api.test_actions import row
from tests.support.broker import queued_dispatches
from tests.support.factories import make_callback
from tests.support.history import events
from worker.serializer import callback_view
from worker.status import Status

UNKNOWN_CAUSES = [
    # the reaper's, the worker's for a dialer error, and retries exhausted after a timeout
    "outcome unknown: attempt 1 started but never reported back (worker lost mid-dial)",
    "outcome unknown: dialer error: RuntimeError()",
    "outcome unknown: an attempt timed out after the request was sent, so the call may "
    "have been placed; gave up after 3 attempts",
]


@pytest.mark.parametrize("cause", UNKNOWN_CAUSES)
def test_unknown_outcome_without_force_is_409_saying_why_and_how(
    client: TestClient,
    keys: Keys,
    pg_sessions: sessionmaker[Session],
    api_redis_url: str,
    cause: str,
) -> None:
    with pg_sessions.begin() as s:
        cb = make_callback(s, Status.FAILED, attempts=1, failure_cause=cause)
    before = callback_view(row(pg_sessions, cb.id))
    for body in ({}, None, {"force": False}):  # the SDKs send {}
        r = client.post(f"/v1/callbacks/{cb.id}/dispatch", headers=bearer(keys.a), json=body)
        assert r.status_code == 409, r.text
        assert r.json()["code"] == "CONFLICT"
        error = r.json()["error"]
        assert "may already have been called" in error
        assert '{"force": true}' in error
    assert callback_view(row(pg_sessions, cb.id)) == before
    assert queued_dispatches(api_redis_url) == []


def test_unknown_outcome_with_force_is_dispatched_and_recorded_as_forced(
    client: TestClient, keys: Keys, pg_sessions: sessionmaker[Session], api_redis_url: str
) -> None:
    with pg_sessions.begin() as s:
        cb = make_callback(s, Status.FAILED, attempts=1, failure_cause=UNKNOWN_CAUSES[0])
    r = client.post(f"/v1/callbacks/{cb.id}/dispatch", headers=bearer(keys.a), json={"force": True})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "dispatching"
    assert row(pg_sessions, cb.id).dispatch_round == 2
    assert queued_dispatches(api_redis_url) == [("callbacks.dispatch_claimed", [[cb.id]])]
    last = events(pg_sessions, cb.id)[-1]
    assert last.detail["forced"] is True
    assert last.detail["retry_of"] == UNKNOWN_CAUSES[0]


def test_a_known_failure_needs_no_force(
    client: TestClient, keys: Keys, pg_sessions: sessionmaker[Session]
) -> None:
    with pg_sessions.begin() as s:
        cb = make_callback(s, Status.FAILED, attempts=1, failure_cause="provider refused")
    r = client.post(f"/v1/callbacks/{cb.id}/dispatch", headers=bearer(keys.a), json={})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("body", [{"force": "yes"}, {"force": 1}, {"force": None}])
def test_force_must_be_a_boolean(
    client: TestClient, keys: Keys, pg_sessions: sessionmaker[Session], body: object
) -> None:
    with pg_sessions.begin() as s:
        cb = make_callback(s, Status.FAILED, attempts=1, failure_cause=UNKNOWN_CAUSES[0])
    r = client.post(f"/v1/callbacks/{cb.id}/dispatch", headers=bearer(keys.a), json=body)
    assert r.status_code == 400
    assert r.json() == {
        "error": "Invalid request body: force: must be true or false",
        "code": "VALIDATION_ERROR",
    }
