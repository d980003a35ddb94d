"""Where the API's reads run: a get, a page, a key lookup, each awaited by an async route.

On PostgreSQL (:class:`PoolReader`) they run on the event loop over a pool of async
psycopg connections (``worker.db.read_pool``): no hop to a worker thread and back, which
was 15-23 % of a get under wrk (README "Admin API under load"). On the embedded SQLite
file (:class:`ThreadReader`) they run the same statements on the sync engine in the
threadpool, as before. Either way the documents are those of :mod:`worker.api.reads`.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import psycopg
from sqlalchemy import Engine, bindparam, inspect, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from worker.api import reads
from worker.api.errors import Unavailable
from worker.apikeys import MAX_TOKEN_LENGTH, TOKEN_PREFIX, hash_token, verify
from worker.db.models import ApiKey
from worker.db.read_pool import Conn, ReadPool, compiled_sql

log = logging.getLogger(__name__)

T = TypeVar("T")


class Reader(Protocol):
    async def callback(self, organization_id: str, callback_id: str) -> bytes: ...

    async def page(
        self, organization_id: str, filters: reads.ListFilter, *, limit: int, cursor: str | None
    ) -> bytes: ...

    async def key(self, token: str) -> ApiKey | None:
        """The live key of ``token``, or ``None``: :func:`worker.apikeys.verify`."""
        ...

    async def close(self) -> None: ...


class ThreadReader:
    """The sync engine in the threadpool (SQLite, where psycopg does not apply)."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    async def callback(self, organization_id: str, callback_id: str) -> bytes:
        def read() -> bytes:
            with reads.read_connection(self.sessions) as conn:
                return reads.callback_json(conn, organization_id, callback_id)

        return await run_in_threadpool(read)

    async def page(
        self, organization_id: str, filters: reads.ListFilter, *, limit: int, cursor: str | None
    ) -> bytes:
        def read() -> bytes:
            with reads.read_connection(self.sessions) as conn:
                return reads.page_json(conn, organization_id, filters, limit=limit, cursor=cursor)

        return await run_in_threadpool(read)

    async def key(self, token: str) -> ApiKey | None:
        def read() -> ApiKey | None:
            with self.sessions() as session:
                return verify(session, token)

        return await run_in_threadpool(read)

    async def close(self) -> None:
        return None


_KEY_COLUMNS = list(ApiKey.__table__.c)
_KEY_ATTRIBUTES = [inspect(ApiKey).get_property_by_column(c).key for c in _KEY_COLUMNS]
_KEY_SQL = compiled_sql(
    select(*_KEY_COLUMNS).where(ApiKey.__table__.c.token_hash == bindparam("digest"))
)


class PoolReader:
    """On the event loop, over :class:`worker.db.read_pool.ReadPool`. A database that
    cannot be reached is a 503 with ``Retry-After``, as on the sync path
    (``worker.api.errors``); a read that meets a lost connection is run once more on a
    fresh one first."""

    def __init__(self, pool: ReadPool) -> None:
        self.pool = pool

    async def _run(self, read: Callable[[Conn], Awaitable[T]]) -> T:
        try:
            return await self.pool.run(read)
        except psycopg.OperationalError as exc:
            log.warning("answering 503: database unavailable (%s)", type(exc).__name__)
            raise Unavailable("Database unavailable, try again") from None

    async def callback(self, organization_id: str, callback_id: str) -> bytes:
        async def read(conn: Conn) -> bytes:
            return await reads.callback_json_async(conn, organization_id, callback_id)

        return await self._run(read)

    async def page(
        self, organization_id: str, filters: reads.ListFilter, *, limit: int, cursor: str | None
    ) -> bytes:
        async def read(conn: Conn) -> bytes:
            return await reads.page_json_async(
                conn, organization_id, filters, limit=limit, cursor=cursor
            )

        return await self._run(read)

    async def key(self, token: str) -> ApiKey | None:
        # The checks of worker.apikeys.verify, in the same order (a test holds them equal).
        if not token.startswith(TOKEN_PREFIX) or len(token) > MAX_TOKEN_LENGTH:
            return None
        digest = hash_token(token)

        async def read(conn: Conn) -> tuple[object, ...] | None:
            cur = await conn.execute(_KEY_SQL, {"digest": digest})
            return await cur.fetchone()

        row = await self._run(read)
        if row is None:
            return None
        key = ApiKey(**dict(zip(_KEY_ATTRIBUTES, row, strict=True)))
        if not hmac.compare_digest(key.token_hash, digest) or key.revoked_at is not None:
            return None
        return key

    async def close(self) -> None:
        await self.pool.close()


def reader_for(sessions: sessionmaker[Session], *, on_loop: bool, pool_size: int) -> Reader:
    """``on_loop``: a :class:`PoolReader` on the database of ``sessions`` when it is
    PostgreSQL (``pool_size`` connections); otherwise the sync engine's threads."""
    engine = sessions.kw["bind"]
    assert isinstance(engine, Engine), "the API's sessions are bound to one engine"
    if not on_loop or engine.dialect.name != "postgresql":
        return ThreadReader(sessions)
    # The same server, user and options, as a libpq URL (no SQLAlchemy driver name).
    conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    return PoolReader(ReadPool(conninfo, size=pool_size))
