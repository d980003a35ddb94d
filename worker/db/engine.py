"""Engine and session factory, built once per process from the settings."""

from __future__ import annotations

import select
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DisconnectionError
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
API_READ_POOL_SIZE = 16
"""Connections per API process for reads on the event loop (``API_READS=loop``,
``worker.db.read_pool``). More than the sync pool's 8: a connection whose answer has
arrived waits until the one event loop comes round to it, so fewer are querying at any
instant (wrk, 50 clients, load 8-9: 12 connections 2,949 gets/s, 24: 3,319)."""


def make_engine(
    url: str, *, pool_size: int = 10, max_overflow: int | None = None, drop_closed: bool = False
) -> Engine:
    """``drop_closed``: at checkout, discard a pooled connection the server has closed.

    A restarting or failing-over PostgreSQL ends every session with a FATAL message and
    closes the socket; an idle pooled connection then has bytes (or EOF) waiting. Seeing
    that is one ``poll`` on the socket, no round trip (``pool_pre_ping`` costs one per
    checkout: +0.5-2 ms a request here, measured), and the pool hands out a fresh
    connection instead, so the first requests after a restart succeed. A connection lost
    without a word (a network cut) is still met on first use: the API answers 503 with
    ``Retry-After`` and SQLAlchemy invalidates the pool's older connections.
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # No pool_pre_ping: it cost a round trip per checkout (14 % of worker time, measured
    # by tests/perf). A dropped connection is invalidated on first use instead, and the
    # callers retry that (worker.db.retry) or leave it to the reaper.
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size * 2 if max_overflow is None else max_overflow,
        pool_recycle=1800,
        # Short OLTP statements only: JIT compiling (seen at ~1 s on the fair claim's pick)
        # never pays off here, and setting it per connection saves a round trip per claim.
        connect_args={"options": "-c jit=off"},
    )
    if drop_closed:
        event.listen(engine, "checkout", _drop_if_closed_by_server)
    return engine


def _drop_if_closed_by_server(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    # An idle connection of ours is owed nothing by the server (we never LISTEN): anything
    # readable is its goodbye. DisconnectionError makes the pool connect afresh.
    try:
        fd = dbapi_connection.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
        if poller.poll(0):
            raise DisconnectionError("the server closed this pooled connection")
    except (OSError, ValueError) as exc:  # a socket already gone
        raise DisconnectionError(str(exc)) from exc


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
