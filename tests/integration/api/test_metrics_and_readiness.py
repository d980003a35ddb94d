"""``/metrics`` behind ``METRICS_TOKEN``, its backlog read at most once per few seconds,
and a ``/readyz`` cheap enough for many probes a second."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis
from celery import Celery
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, sessionmaker

from tests.integration.api.conftest import FixedClock, Keys, bearer
from tests.support.factories import T0, make_callback
from worker.api.app import create_app
from worker.api.broker import celery_probe
from worker.api.routes.metrics import STATE_TTL
from worker.settings import Settings

TOKEN = "metrics-token-0123456789abcdef"  # noqa: S105  # a test value


@pytest.fixture
def statements(pg_engine: Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(args[2])

    event.listen(pg_engine, "before_cursor_execute", record)
    yield seen
    event.remove(pg_engine, "before_cursor_execute", record)


def _backlog(text: str) -> float:
    (line,) = [x for x in text.splitlines() if x.startswith("callbacks_due_backlog ")]
    return float(line.split()[1])


def test_metrics_are_public_when_no_token_is_set(client: TestClient) -> None:
    r = client.get("/metrics")
    assert r.status_code == 200
    assert "callbacks_due_backlog" in r.text


def test_metrics_want_the_bearer_token_when_one_is_set(
    api_settings: Settings,
    pg_sessions: sessionmaker[Session],
    celery_app: Celery,
    clock: FixedClock,
    keys: Keys,
) -> None:
    settings = api_settings.model_copy(update={"metrics_token": TOKEN})
    app = create_app(settings, sessions=pg_sessions, celery=celery_app, clock=clock)
    with TestClient(app) as client:
        for headers in (
            {},
            bearer("wrong-token-0123456789"),
            bearer(keys.a),
            {"Authorization": TOKEN},
        ):
            r = client.get("/metrics", headers=headers)
            assert r.status_code == 401
            assert r.json() == {"error": "Unauthorized", "code": "UNAUTHORIZED"}
            assert r.headers["www-authenticate"] == "Bearer"
            assert "callbacks_" not in r.text
        r = client.get("/metrics", headers=bearer(TOKEN))
        assert r.status_code == 200
        assert "callbacks_due_backlog" in r.text
        # The health checks stay public: probes carry no credentials.
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200


def test_a_short_metrics_token_is_refused_at_start_up() -> None:
    with pytest.raises(ValueError, match="metrics_token"):
        Settings(metrics_token="short")  # noqa: S106  # a test value


def test_the_backlog_is_read_once_per_ttl_however_many_scrapes(
    client: TestClient,
    clock: FixedClock,
    pg_sessions: sessionmaker[Session],
    statements: list[str],
) -> None:
    clock.at = T0 + timedelta(minutes=1)
    with pg_sessions.begin() as s:
        make_callback(s)
    for _ in range(20):
        assert _backlog(client.get("/metrics").text) == 1
    # The backlog's count, the claims not started (issue 13) and the webhook deliveries'
    # count per endpoint: each once.
    counts = [sql for sql in statements if "count(" in sql.lower()]
    assert len(counts) == 3
    assert len([sql for sql in counts if "webhook_deliveries" in sql]) == 1
    with pg_sessions.begin() as s:
        make_callback(s)
    clock.at += STATE_TTL - timedelta(milliseconds=1)
    assert _backlog(client.get("/metrics").text) == 1
    clock.at += timedelta(milliseconds=1)
    assert _backlog(client.get("/metrics").text) == 2
    assert len([sql for sql in statements if "count(" in sql.lower()]) == 6


def test_readyz_checks_at_most_once_a_second(
    api_settings: Settings,
    pg_sessions: sessionmaker[Session],
    celery_app: Celery,
    clock: FixedClock,
) -> None:
    probe = celery_probe(celery_app)
    calls: list[int] = []

    def counting() -> None:
        calls.append(1)
        probe()

    app = create_app(
        api_settings, sessions=pg_sessions, celery=celery_app, clock=clock, broker_probe=counting
    )
    with TestClient(app) as client:
        for _ in range(50):
            assert client.get("/readyz").status_code == 200
        assert len(calls) == 1
        clock.at += timedelta(seconds=1)
        assert client.get("/readyz").status_code == 200
        assert len(calls) == 2
    probe.close()


def test_the_broker_probe_keeps_one_connection(celery_app: Celery, api_redis_url: str) -> None:
    probe = celery_probe(celery_app)
    server = redis.Redis.from_url(api_redis_url)
    try:
        before = int(server.info("stats")["total_connections_received"])
        for _ in range(30):
            probe()
        opened = int(server.info("stats")["total_connections_received"]) - before
        # One for the probe (others on the shared server may add a few; 30 would be ours).
        assert opened < 10, opened
        first = probe.conn
        probe()
        assert probe.conn is first
    finally:
        probe.close()
        server.close()
