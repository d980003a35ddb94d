"""Dependencies down, unknown routes, unexpected errors: always the envelope, never a trace."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.integration.api.conftest import Keys, bearer
from tests.support.factories import make_callback
from worker.api.app import create_app
from worker.celery.config import publisher
from worker.db.engine import make_engine, make_sessions
from worker.db.models import Callback, CallbackEvent
from worker.settings import Settings
from worker.status import Status

CLOSED_REDIS = "redis://127.0.0.1:1/0"
CLOSED_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:1/none"


@pytest.fixture
def broker_down_client(pg_url: str, pg_sessions: sessionmaker[Session]) -> TestClient:
    settings = Settings(database_url=pg_url, broker_url=CLOSED_REDIS)
    celery = publisher(settings)
    # Keep the test short: one quick publish try instead of the production retries.
    celery.conf.task_publish_retry_policy = {"max_retries": 0}
    return TestClient(create_app(settings, sessions=pg_sessions, celery=celery))


@pytest.mark.parametrize(
    ("status", "state"),
    [
        (Status.SCHEDULED, {}),
        (Status.FAILED, {"failure_cause": "gave up", "dispatch_round": 3, "attempts": 4}),
    ],
)
def test_dispatch_with_broker_down_is_503_and_undone(
    broker_down_client: TestClient,
    keys: Keys,
    pg_sessions: sessionmaker[Session],
    status: Status,
    state: dict[str, Any],
) -> None:
    with pg_sessions.begin() as s:
        cb = make_callback(s, status, **state)
    with pg_sessions() as s:
        before = s.get(Callback, cb.id)
        assert before is not None
        s.expunge(before)
    r = broker_down_client.post(f"/v1/callbacks/{cb.id}/dispatch", headers=bearer(keys.a))
    assert r.status_code == 503
    assert r.json()["code"] == "SERVICE_UNAVAILABLE"
    with pg_sessions() as s:
        after = s.get(Callback, cb.id)
        assert after is not None
        assert after.status == status
        assert after.failure_cause == before.failure_cause
        assert after.dispatch_round == before.dispatch_round
        assert after.lease_expires_at is None
        moves = [
            (e.from_status, e.to_status)
            for e in s.query(CallbackEvent).filter_by(callback_id=cb.id).order_by(CallbackEvent.id)
        ][-2:]
    assert moves == [(str(status), "dispatching"), ("dispatching", str(status))]


def test_readyz_is_503_when_the_broker_is_down(broker_down_client: TestClient) -> None:
    r = broker_down_client.get("/readyz")
    assert r.status_code == 503
    assert r.json() == {"error": "Not ready: broker unreachable", "code": "SERVICE_UNAVAILABLE"}


def test_readyz_and_healthz_when_all_is_up(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"


def test_database_down_is_503(api_redis_url: str) -> None:
    settings = Settings(database_url=CLOSED_POSTGRES, broker_url=api_redis_url)
    engine = make_engine(CLOSED_POSTGRES)
    app = create_app(settings, sessions=make_sessions(engine))
    with TestClient(app) as client:
        r = client.get("/v1/callbacks", headers=bearer("sk_live_whatever"))
        assert r.status_code == 503
        assert r.json() == {
            "error": "Database unavailable, try again",
            "code": "SERVICE_UNAVAILABLE",
        }
        r = client.get("/readyz")
        assert r.status_code == 503
        assert r.json()["error"] == "Not ready: database unreachable"
        assert client.get("/healthz").status_code == 200
    engine.dispose()


class BrokenClock:
    """A clock that fails: the only way to make an unexpected error without a bug."""

    def now(self) -> datetime:
        raise RuntimeError("secret internals at line 42")


def test_unexpected_error_is_a_bare_500_without_a_trace(
    api_settings: Settings,
    pg_sessions: sessionmaker[Session],
    keys: Keys,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with pg_sessions.begin() as s:
        cb = make_callback(s)
    app = create_app(api_settings, sessions=pg_sessions, clock=BrokenClock())
    caplog.set_level(logging.INFO)
    with TestClient(app) as client:
        r = client.post(f"/v1/callbacks/{cb.id}/cancel", headers=bearer(keys.a))
    assert r.status_code == 500
    assert r.json() == {"error": "Internal error", "code": "INTERNAL_ERROR"}
    assert "secret" not in r.text
    info_and_up = [rec for rec in caplog.records if rec.levelno >= logging.INFO]
    assert info_and_up
    assert all(rec.exc_info is None for rec in info_and_up)
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/nope", 404, "NOT_FOUND"),
        ("GET", "/v1/callbacks/a/b/c", 404, "NOT_FOUND"),
        ("DELETE", "/v1/callbacks", 405, "METHOD_NOT_ALLOWED"),
        ("GET", "/v1/callbacks/x/cancel", 405, "METHOD_NOT_ALLOWED"),
        ("PUT", "/v1/callbacks/x", 405, "METHOD_NOT_ALLOWED"),
    ],
)
def test_framework_errors_use_the_envelope(
    client: TestClient, method: str, path: str, status: int, code: str
) -> None:
    r = client.request(method, path)
    assert r.status_code == status
    assert set(r.json()) == {"error", "code"}
    assert r.json()["code"] == code


def test_openapi_is_served_without_auth(client: TestClient) -> None:
    from worker.api.openapi import served

    r = client.get("/openapi.json")
    assert r.status_code == 200
    assert r.json() == served()


def test_info_logs_mask_phone_numbers(
    client: TestClient,
    keys: Keys,
    pg_sessions: sessionmaker[Session],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with pg_sessions.begin() as s:
        cb = make_callback(s, to="+12015559876")
        other = make_callback(s, to="+12015559876")
    caplog.set_level(logging.INFO)
    client.post(f"/v1/callbacks/{cb.id}/cancel", headers=bearer(keys.a))
    client.post(f"/v1/callbacks/{other.id}/dispatch", headers=bearer(keys.a))
    assert "9876" in caplog.text
    assert "+12015559876" not in caplog.text
