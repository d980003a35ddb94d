"""A connection PostgreSQL dropped is replaced on the retry, not handed out twice."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, ProgrammingError

from tests.support.databases import ADMIN_URL
from worker.db.engine import make_engine
from worker.db.retry import on_fresh_connection


def _kill_pooled_connection(engine: Engine) -> None:
    """Terminate the one connection in ``engine``'s pool, as a failover would."""
    with engine.connect() as conn:
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def test_dropped_connection_is_retried_once_on_a_fresh_one(pg_url: str) -> None:
    engine = make_engine(pg_url, pool_size=1)
    _kill_pooled_connection(engine)
    calls = 0

    def work() -> int:
        nonlocal calls
        calls += 1
        with engine.begin() as conn:
            return int(conn.execute(text("SELECT 41 + 1")).scalar_one())

    with pytest.raises(DBAPIError):
        work()  # without the retry: the pooled connection is dead
    _kill_pooled_connection(engine)  # the pool replaced it; kill the replacement too
    calls = 0
    assert on_fresh_connection(work) == 42
    assert calls == 2
    engine.dispose()


def test_a_failed_statement_is_not_retried(pg_url: str) -> None:
    engine = make_engine(pg_url, pool_size=1)
    calls = 0

    def work() -> None:
        nonlocal calls
        calls += 1
        with engine.begin() as conn:
            conn.execute(text("SELECT * FROM no_such_table"))

    with pytest.raises(ProgrammingError):
        on_fresh_connection(work)
    assert calls == 1
    engine.dispose()
