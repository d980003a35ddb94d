"""The API's two reads, get and list, each one Core statement answered as JSON bytes.

Same rows, order and shape as :func:`worker.actions.get_callback` / ``list_callbacks`` +
:func:`worker.serializer.callback_view`, without what a read does not need (measured with
``python -m tests.perf.bench_api --load --profile``): no ORM identity map or instance
per row, no transaction (one autocommit statement: no ``BEGIN``/``ROLLBACK`` round
trips), and orjson instead of ``json.dumps``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, Select, bindparam, select
from sqlalchemy.orm import Session, sessionmaker

from worker.actions import CallbackNotFound, storable
from worker.db.models import Callback
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


def _list(by_status: bool, by_session: bool) -> Select[Any]:
    """Newest first, ties by id: the order of the ``(organization_id, [status |
    source_session_id,] created_at, id)`` indexes, walked backwards up to ``limit``."""
    query = select(*_COLUMNS).where(_table.c.organization_id == bindparam("org"))
    if by_status:
        query = query.where(_table.c.status == bindparam("status"))
    if by_session:
        query = query.where(_table.c.source_session_id == bindparam("session"))
    return query.order_by(_table.c.created_at.desc(), _table.c.id.desc()).limit(bindparam("limit"))


_LISTS = {(st, se): _list(st, se) for st in (False, True) for se in (False, True)}


def callback_json(conn: Connection, organization_id: str, callback_id: str) -> bytes:
    """One callback of this organization; another organization's is not found (invariant 8)."""
    if not storable(callback_id):
        raise CallbackNotFound(callback_id)
    row = conn.execute(_GET, {"id": callback_id, "org": organization_id}).first()
    if row is None:
        raise CallbackNotFound(callback_id)
    return dumps(dict(zip(PUBLIC_FIELDS, row, strict=True)))


def list_json(
    conn: Connection,
    organization_id: str,
    *,
    status: Status | None = None,
    source_session_id: str | None = None,
    limit: int = 25,
) -> bytes:
    if source_session_id is not None and not storable(source_session_id):
        return b'{"callbacks":[]}'
    query = _LISTS[status is not None, source_session_id is not None]
    params = {"org": organization_id, "status": status, "session": source_session_id}
    rows = conn.execute(query, {"limit": limit, **params})
    return dumps({"callbacks": [dict(zip(PUBLIC_FIELDS, row, strict=True)) for row in rows]})
