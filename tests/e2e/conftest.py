"""Servers the end-to-end tests own, so they may stop and restart them: a private
PostgreSQL cluster for the session (tests.support.faults.PrivateCluster) and a private
Redis per test. The servers ``TEST_POSTGRES_URL`` / ``TEST_REDIS_URL`` name are never
stopped or restarted."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from tests.support.databases import sqlalchemy_url
from tests.support.faults import PrivateCluster, PrivateRedis, private_cluster, private_redis
from worker.db.engine import make_engine, make_sessions
from worker.db.migrate import upgrade
from worker.db.models import Base
from worker.db.retry import on_fresh_connection

TABLES = ", ".join(t.name for t in reversed(Base.metadata.sorted_tables))


@dataclass(frozen=True)
class OwnDatabase:
    cluster: PrivateCluster
    url: str
    """SQLAlchemy URL of a migrated database in the cluster."""
    engine: Engine


@pytest.fixture(scope="session")
def own_cluster() -> Iterator[OwnDatabase]:
    with private_cluster() as cluster:
        url = sqlalchemy_url(cluster.create_database(f"callbacks_{uuid.uuid4().hex[:8]}"))
        upgrade(url)
        engine = make_engine(url, pool_size=4)
        try:
            yield OwnDatabase(cluster, url, engine)
        finally:
            engine.dispose()


@pytest.fixture
def own_db(own_cluster: OwnDatabase) -> OwnDatabase:
    """The private cluster running, its database's tables empty."""
    own_cluster.cluster.start()

    def truncate() -> None:
        with own_cluster.engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))

    on_fresh_connection(truncate)  # the previous test may have restarted the server
    return own_cluster


@pytest.fixture
def own_sessions(own_db: OwnDatabase) -> sessionmaker[Session]:
    return make_sessions(own_db.engine)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A Redis of this test's own to stop and restart."""
    with private_redis(tmp_path / "redis") as server:
        yield server
