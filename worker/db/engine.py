"""Engine and session factory, built once per process from the settings."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

API_POOL_SIZE = 8
"""Connections per API process, and as many threads for its sync routes (see
``worker.api.app``). A request holds one only for its statement, so 8 keep a process's
share of 2 cores busy. Before, 10 + 20 overflow for 40 threads: overflow connections
were opened and closed on every burst (connect and close were ~6 % of a read's CPU,
and a new PostgreSQL backend each time)."""
API_POOL_OVERFLOW = 4
"""Only for a thread that would need a second connection at once; steady load stays
within the pool."""


def make_engine(url: str, *, pool_size: int = 10, max_overflow: int | None = None) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # No pool_pre_ping: it cost a round trip per checkout (14 % of worker time, measured
    # by tests/perf). A dropped connection is invalidated on first use instead, and the
    # callers retry that (worker.db.retry) or leave it to the reaper.
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size * 2 if max_overflow is None else max_overflow,
        pool_recycle=1800,
        # Short OLTP statements only: JIT compiling (seen at ~1 s on the fair claim's pick)
        # never pays off here, and setting it per connection saves a round trip per claim.
        connect_args={"options": "-c jit=off"},
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the API read while the worker writes; busy_timeout waits for the writer.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_sessions(engine: Engine) -> sessionmaker[Session]:
    # expire_on_commit=False: rows returned by a transition stay readable after commit.
    return sessionmaker(engine, expire_on_commit=False)
