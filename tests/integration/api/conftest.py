"""The API against the test session's PostgreSQL and a real Redis broker.

The app gets the test's session factory (so tables are cleaned per test) and a real
Celery app on Redis; dispatch messages are read back from the Redis queue itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
import redis
from celery import Celery
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.support.databases import REDIS_URL
from tests.support.factories import T0
from worker.api.app import create_app
from worker.apikeys import create_key, revoke_key
from worker.celery.config import publisher
from worker.settings import Settings

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
"""Frozen 'now' of the API tests: before the factories' default scheduled_at (T0)."""
assert NOW < T0


class FixedClock:
    """The API's injected clock, frozen at ``NOW`` (tests move ``at`` when they need to)."""

    def __init__(self, at: datetime = NOW) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


@dataclass(frozen=True)
class Keys:
    a: str
    """A token for org_a."""
    a_id: str
    b: str
    """A token for org_b."""
    b_id: str
    revoked: str
    """A revoked token of org_a."""


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# A Redis database of their own: these tests read dispatch messages back from the queue,
# and a Celery worker of another test (or of a parallel run on the same machine) on the
# shared database would consume them first.
API_REDIS_URL = os.environ.get("TEST_API_REDIS_URL", REDIS_URL.rsplit("/", 1)[0] + "/12")


@pytest.fixture
def api_redis_url() -> str:
    client = redis.Redis.from_url(API_REDIS_URL)
    client.flushdb()
    client.close()
    return API_REDIS_URL


@pytest.fixture
def api_reads() -> str:
    """API_READS of the app under test: the default; the read tests run under both (their
    own fixture)."""
    return str(Settings.model_fields["api_reads"].default)


@pytest.fixture
def api_settings(pg_url: str, api_redis_url: str, api_reads: str) -> Settings:
    return Settings(database_url=pg_url, broker_url=api_redis_url, api_reads=api_reads)


@pytest.fixture
def celery_app(api_settings: Settings) -> Iterator[Celery]:
    app = publisher(api_settings)
    yield app
    app.close()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def app(
    api_settings: Settings,
    pg_sessions: sessionmaker[Session],
    celery_app: Celery,
    clock: FixedClock,
) -> FastAPI:
    return create_app(api_settings, sessions=pg_sessions, celery=celery_app, clock=clock)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


@pytest.fixture
def keys(pg_sessions: sessionmaker[Session]) -> Keys:
    with pg_sessions.begin() as s:
        key_a, a = create_key(s, "org_a", now=NOW)
        key_b, b = create_key(s, "org_b", now=NOW)
        key_r, revoked = create_key(s, "org_a", now=NOW)
        revoke_key(s, key_r.id, now=NOW)
    return Keys(a=a, a_id=key_a.id, b=b, b_id=key_b.id, revoked=revoked)
