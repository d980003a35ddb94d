"""Shared fixtures: a fresh PostgreSQL database per test session (migrated with the real
migrations), clean tables per test, a SQLite file per test, Redis, and the provider stand-in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from tests.support.databases import REDIS_URL, fresh_postgres_database, sqlalchemy_url
from tests.support.provider import Provider
from worker.db.engine import make_engine, make_sessions
from worker.db.migrate import upgrade
from worker.db.models import Base
from worker.db.retry import on_fresh_connection

# freezegun must leave pytest's own timing alone (`pytest --durations`).
pytest_plugins = ["tests.support.freezing"]

TABLES = ", ".join(t.name for t in reversed(Base.metadata.sorted_tables))


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """SQLAlchemy URL of this test session's own PostgreSQL database, migrated to head."""
    with fresh_postgres_database() as libpq_url:
        url = sqlalchemy_url(libpq_url)
        upgrade(url)
        yield url


@pytest.fixture(scope="session")
def pg_engine(pg_url: str) -> Iterator[Engine]:
    engine = make_engine(pg_url, pool_size=20)
    yield engine
    engine.dispose()


@pytest.fixture
def pg_sessions(pg_engine: Engine) -> sessionmaker[Session]:
    def truncate() -> None:
        with pg_engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))

    # A chaos or crash test before this one may have killed the pool's connections; the
    # product's own recovery (one retry on a fresh connection) applies here too.
    on_fresh_connection(truncate)
    return make_sessions(pg_engine)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'callbacks.db'}"
    upgrade(url)
    return url


@pytest.fixture
def sqlite_sessions(sqlite_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(sqlite_url)
    yield make_sessions(engine)
    engine.dispose()


@pytest.fixture(params=["postgresql", "sqlite"])
def sessions(request: pytest.FixtureRequest) -> sessionmaker[Session]:
    """The core paths run on both backends: PostgreSQL (production) and SQLite (embedded)."""
    name = "pg_sessions" if request.param == "postgresql" else "sqlite_sessions"
    result: sessionmaker[Session] = request.getfixturevalue(name)
    return result


@pytest.fixture
def redis_url() -> str:
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    client.close()
    return REDIS_URL


@pytest.fixture
def provider() -> Iterator[Provider]:
    p = Provider().start()
    yield p
    p.stop()
