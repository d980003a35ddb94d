"""A small asyncio pool of autocommit psycopg connections: the admin API's reads.

Why not the SQLAlchemy engine: a sync route costs a hop to a worker thread and back
(15-23 % of a get under wrk, README "Admin API under load"), and SQLAlchemy's asyncio
layer needs greenlet and adds its own hop per statement. A read is one statement with
no transaction, so a pool of plain connections is all it needs.

It behaves as the API's sync engine does (``worker.db.engine.make_engine`` with
``drop_closed``), so failover is the same:

- connections are opened on demand and a refused connect fails the request at once
  (no background reconnect loop making requests wait): the API answers 503;
- at checkout, a connection the server has closed (a restart's goodbye) is dropped
  without a round trip, and after a connection is found lost in use, every idle one
  older than that is dropped too (a restart ended them all);
- :meth:`ReadPool.run` runs a read again, once, on a fresh connection when its
  connection turns out lost (reads are safe to repeat);
- a connection is recycled after ``recycle`` seconds, as ``pool_recycle``.
"""

from __future__ import annotations

import asyncio
import logging
import select
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TypeVar

import psycopg
from psycopg import AsyncConnection
from psycopg.pq import TransactionStatus
from sqlalchemy import ClauseElement
from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect

log = logging.getLogger(__name__)

T = TypeVar("T")

Conn = AsyncConnection[tuple[object, ...]]


_DIALECT = psycopg_dialect()  # type: ignore[no-untyped-call]


def compiled_sql(statement: ClauseElement) -> str:
    """A SQLAlchemy statement as the text the sync engine sends (``%(name)s`` parameters,
    psycopg's casts): compile once, run with psycopg directly."""
    return str(statement.compile(dialect=_DIALECT))


class PoolTimeout(psycopg.OperationalError):
    """No connection came free within the pool's timeout (answered as unavailable)."""


def closed_by_server(conn: Conn) -> bool:
    """Whether the server has already said goodbye on this idle connection: one ``poll``
    on its socket, no round trip (an idle connection of ours is owed nothing else: we
    never LISTEN)."""
    if conn.closed or conn.broken:
        return True
    try:
        poller = select.poll()
        poller.register(conn.pgconn.socket, select.POLLIN | select.POLLERR | select.POLLHUP)
        return bool(poller.poll(0))
    except (OSError, ValueError, psycopg.OperationalError):  # a socket already gone
        return True


class ReadPool:
    """At most ``size`` connections, each used by one read at a time."""

    def __init__(
        self,
        conninfo: str,
        *,
        size: int,
        timeout: float = 30.0,
        recycle: float = 1800.0,
        connect_timeout: int = 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.conninfo = conninfo
        self.size = size
        self.timeout = timeout
        self.recycle = recycle
        self.connect_timeout = connect_timeout
        self.clock = clock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots = asyncio.Semaphore(size)
        self._idle: deque[tuple[float, Conn]] = deque()
        self._lost_at = float("-inf")
        """When a connection was last found lost in use: idle ones older are dropped."""
        # An app that is never shut down (a test client without lifespan) leaves its idle
        # connections open: close them when the pool goes, not in psycopg's finalizer
        # (which warns). The deque is the pool's for its whole life (cleared, never replaced).
        weakref.finalize(self, _finish, self._idle)

    def _bind(self) -> None:
        # asyncio primitives belong to one event loop. The app's lifespan runs in the
        # serving loop, but a test client without lifespan runs each request in a new one:
        # start afresh there (the old loop's connections cannot be awaited any more).
        loop = asyncio.get_running_loop()
        if loop is self._loop:
            return
        if self._loop is not None:
            _finish(self._idle)
        self._loop = loop
        self._slots = asyncio.Semaphore(self.size)

    async def _connect(self) -> Conn:
        conn: Conn = await AsyncConnection.connect(
            self.conninfo,
            autocommit=True,
            connect_timeout=self.connect_timeout,
            # jit off as the sync engine (short statements); UTC so that timestamps come
            # back with ``datetime.timezone.utc``, as the ORM's UTCDateTime gives them.
            options="-c jit=off -c timezone=UTC",
        )
        return conn

    async def _checkout(self) -> tuple[float, Conn]:
        while self._idle:
            born, conn = self._idle.pop()
            stale = born <= self._lost_at or self.clock() - born > self.recycle
            if stale or closed_by_server(conn):
                await conn.close()
                continue
            return born, conn
        return self.clock(), await self._connect()

    def _checkin(self, born: float, conn: Conn) -> None:
        reusable = (
            not conn.closed
            and not conn.broken
            and conn.info.transaction_status == TransactionStatus.IDLE
        )
        if reusable:
            self._idle.append((born, conn))
        else:
            conn.pgconn.finish()

    async def run(self, read: Callable[[Conn], Awaitable[T]]) -> T:
        """``read`` on a pooled connection; once more on a fresh one if that connection
        turns out lost (the server restarted, failed over or killed it). ``read`` must be
        safe to repeat."""
        self._bind()
        try:
            async with asyncio.timeout(self.timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise PoolTimeout(f"no connection free within {self.timeout}s") from None
        try:
            for attempt in range(2):
                born, conn = await self._checkout()
                try:
                    result = await read(conn)
                except psycopg.OperationalError:
                    lost = conn.broken or conn.closed
                    self._checkin(born, conn)
                    if not lost:
                        raise
                    self._lost_at = self.clock()
                    if attempt:
                        raise
                    log.info("read met a lost database connection; once more on a fresh one")
                    continue
                except BaseException:
                    self._checkin(born, conn)
                    raise
                self._checkin(born, conn)
                return result
            raise AssertionError("unreachable")  # pragma: no cover
        finally:
            self._slots.release()

    async def close(self) -> None:
        while self._idle:
            _, conn = self._idle.pop()
            await conn.close()


def _finish(idle: deque[tuple[float, Conn]]) -> None:
    """Close idle connections without the event loop (libpq's ``PQfinish``)."""
    while idle:
        _, conn = idle.pop()
        conn.pgconn.finish()
