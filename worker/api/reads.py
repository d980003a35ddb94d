"""The API's two reads, get and list, each one Core statement answered as JSON bytes.

Same rows, order and shape as :func:`worker.actions.get_callback` / ``list_callbacks`` +
:func:`worker.serializer.callback_view`, without what a read does not need (measured with
``python -m tests.perf.bench_api --load --profile``): no ORM identity map or instance
per row, no transaction (one autocommit statement: no ``BEGIN``/``ROLLBACK`` round
trips), and orjson instead of ``json.dumps``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import Connection, Engine, Select, String, bindparam, select, tuple_
from sqlalchemy.orm import Session, sessionmaker

from worker.actions import CallbackNotFound, storable
from worker.api import cursors
from worker.db.models import Callback
from worker.db.read_pool import Conn as AsyncConn
from worker.db.read_pool import compiled_sql
from worker.db.types import UTCDateTime
from worker.serializer import PUBLIC_FIELDS, dumps
from worker.status import Status

_table = Callback.__table__
_COLUMNS = [_table.c[name] for name in PUBLIC_FIELDS]


@contextmanager
def read_connection(sessions: sessionmaker[Session]) -> Iterator[Connection]:
    """A pooled connection in autocommit, without a Session: a read is one statement,
    one round trip (no ``BEGIN``/``ROLLBACK``), and none of the Session's bookkeeping."""
    engine = sessions.kw["bind"]
    assert isinstance(engine, Engine), "the API's sessions are bound to one engine"
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        yield conn


# Built once: a statement object caches its cache key, so each request skips building
# the expression and finding its compiled form (measured: ~9 % of a get).
_GET = select(*_COLUMNS).where(
    _table.c.id == bindparam("id"), _table.c.organization_id == bindparam("org")
)
_GET_SQL = compiled_sql(_GET)


def callback_json(conn: Connection, organization_id: str, callback_id: str) -> bytes:
    """One callback of this organization; another organization's is not found (invariant 8)."""
    if not storable(callback_id):
        raise CallbackNotFound(callback_id)
    row = conn.execute(_GET, {"id": callback_id, "org": organization_id}).first()
    return _callback_body(callback_id, row)


def _callback_body(callback_id: str, row: Sequence[Any] | None) -> bytes:
    if row is None:
        raise CallbackNotFound(callback_id)
    return dumps(dict(zip(PUBLIC_FIELDS, row, strict=True)))


async def callback_json_async(conn: AsyncConn, organization_id: str, callback_id: str) -> bytes:
    """:func:`callback_json` on an async psycopg connection: the same statement (compiled
    by SQLAlchemy for psycopg, once), the same document."""
    if not storable(callback_id):
        raise CallbackNotFound(callback_id)
    cur = await conn.execute(_GET_SQL, {"id": callback_id, "org": organization_id})
    return _callback_body(callback_id, await cur.fetchone())


# --- pages: cursor and the console's filters (issue 16) --------------------------------


@dataclass(frozen=True)
class ListFilter:
    """What a page of ``GET /v1/callbacks`` is filtered by; ``None``: not filtered."""

    status: Status | None = None
    source_session_id: str | None = None
    to_number: str | None = None
    scheduled_after: datetime | None = None
    """Inclusive: ``scheduled_at >= scheduled_after``."""
    scheduled_before: datetime | None = None
    """Exclusive: ``scheduled_at < scheduled_before`` (so ranges tile without overlap)."""

    def scope(self, organization_id: str) -> list[object]:
        """What a cursor is bound to: the organization and every filter."""
        after, before = self.scheduled_after, self.scheduled_before
        return [
            organization_id,
            self.status,
            self.source_session_id,
            self.to_number,
            None if after is None else after.astimezone(UTC).isoformat(),
            None if before is None else before.astimezone(UTC).isoformat(),
        ]


@cache
def _page(
    by_status: bool, by_session: bool, by_number: bool, after: bool, before: bool, cursor: bool
) -> Select[Any]:
    """Keyset, not offset: after the cursor's ``(created_at, id)``, walking the same
    ``(organization_id, [filter,] created_at, id)`` index backwards, so page 1,000 costs
    what page 1 does. One more row than asked tells whether there is a next page."""
    query = select(*_COLUMNS).where(_table.c.organization_id == bindparam("org"))
    if by_status:
        query = query.where(_table.c.status == bindparam("status"))
    if by_session:
        query = query.where(_table.c.source_session_id == bindparam("session"))
    if by_number:
        query = query.where(_table.c.to_number == bindparam("to_number"))
    if after:
        query = query.where(_table.c.scheduled_at >= bindparam("after", type_=UTCDateTime()))
    if before:
        query = query.where(_table.c.scheduled_at < bindparam("before", type_=UTCDateTime()))
    if cursor:
        position = tuple_(
            bindparam("cursor_at", type_=UTCDateTime()), bindparam("cursor_id", type_=String())
        )
        query = query.where(tuple_(_table.c.created_at, _table.c.id) < position)
    order = (_table.c.created_at.desc(), _table.c.id.desc())
    return query.order_by(*order).limit(bindparam("limit"))


@cache
def _page_sql(*flags: bool) -> str:
    return compiled_sql(_page(*flags))


_CREATED_AT, _ID = PUBLIC_FIELDS.index("created_at"), PUBLIC_FIELDS.index("id")


def page_json(
    conn: Connection,
    organization_id: str,
    filters: ListFilter,
    *,
    limit: int = 25,
    cursor: str | None = None,
) -> bytes:
    """A page, newest first, and ``next_cursor`` (``None`` on the last page).

    Stable under concurrent inserts: a new row is newer than every row already listed
    (``created_at`` is its creation time), so it never shifts the rows after a cursor.
    Raises :class:`worker.api.cursors.BadCursor` for a cursor not made for this list.
    """
    plan = _plan(organization_id, filters, limit, cursor)
    if plan is None:
        return _EMPTY_PAGE
    flags, params, scope = plan
    return _page_body(conn.execute(_page(*flags), params).all(), limit, scope)


async def page_json_async(
    conn: AsyncConn,
    organization_id: str,
    filters: ListFilter,
    *,
    limit: int = 25,
    cursor: str | None = None,
) -> bytes:
    """:func:`page_json` on an async psycopg connection (same statement, same document)."""
    plan = _plan(organization_id, filters, limit, cursor)
    if plan is None:
        return _EMPTY_PAGE
    flags, params, scope = plan
    if filters.status is not None:
        # psycopg binds what it is given: the column holds the status's value.
        params["status"] = filters.status.value
    cur = await conn.execute(_page_sql(*flags), params)
    return _page_body(await cur.fetchall(), limit, scope)


_EMPTY_PAGE = dumps({"callbacks": [], "next_cursor": None})
_Flags = tuple[bool, bool, bool, bool, bool, bool]


def _plan(
    organization_id: str, filters: ListFilter, limit: int, cursor: str | None
) -> tuple[_Flags, dict[str, Any], list[object]] | None:
    """Which statement and which parameters; ``None``: nothing can match."""
    scope = filters.scope(organization_id)
    position = None if cursor is None else cursors.decode(cursor, scope)
    f = filters
    if f.source_session_id is not None and not storable(f.source_session_id):
        return None
    flags = (
        f.status is not None,
        f.source_session_id is not None,
        f.to_number is not None,
        f.scheduled_after is not None,
        f.scheduled_before is not None,
        position is not None,
    )
    params: dict[str, Any] = {
        "org": organization_id,
        "status": f.status,
        "session": f.source_session_id,
        "to_number": f.to_number,
        "after": f.scheduled_after,
        "before": f.scheduled_before,
        "limit": limit + 1,
    }
    if position is not None:
        params |= {"cursor_at": position.created_at, "cursor_id": position.id}
    return flags, params, scope


def _page_body(rows: Sequence[Sequence[Any]], limit: int, scope: list[object]) -> bytes:
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = None
    if more:
        last = rows[-1]
        next_cursor = cursors.encode(cursors.Position(last[_CREATED_AT], last[_ID]), scope)
    callbacks = [dict(zip(PUBLIC_FIELDS, row, strict=True)) for row in rows]
    return dumps({"callbacks": callbacks, "next_cursor": next_cursor})
