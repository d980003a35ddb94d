"""Operator keys on ``/v1/callbacks`` (issue 16): which organization a request acts in.

An organization's key acts in its own organization. An operator key
(``callbacks api-key create --operator``) sees every organization: a callback by id is
found in whichever organization holds it, and its list spans all organizations unless
``organization_id`` narrows it. Its own ``organization_id`` is a placeholder no
organization has (:data:`worker.apikeys.OPERATOR_ORG`), so any route that does not ask
here shows an operator key nothing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, String, bindparam, select, tuple_

from worker.actions import CallbackNotFound, storable
from worker.api import cursors
from worker.api.reads import ListFilter
from worker.db.models import ApiKey, Callback
from worker.db.types import UTCDateTime
from worker.serializer import PUBLIC_FIELDS, dumps

_table = Callback.__table__
_COLUMNS = [_table.c[name] for name in PUBLIC_FIELDS]
ALL = "*"
"""What an operator's cursor is scoped to when no organization narrows its list."""


def organization_of(conn: Connection, caller: ApiKey, callback_id: str) -> str:
    """The organization a request about ``callback_id`` acts in (not found: 404)."""
    if not caller.operator:
        return caller.organization_id
    if not storable(callback_id):
        raise CallbackNotFound(callback_id)
    org = conn.scalar(select(_table.c.organization_id).where(_table.c.id == callback_id))
    if org is None:
        raise CallbackNotFound(callback_id)
    return str(org)


def page_all_json(
    conn: Connection, filters: ListFilter, *, limit: int, cursor: str | None
) -> bytes:
    """An operator's page across every organization, newest first (``ix_callbacks_created``)."""
    scope = filters.scope(ALL)
    position = None if cursor is None else cursors.decode(cursor, scope)
    f = filters
    if f.source_session_id is not None and not storable(f.source_session_id):
        return dumps({"callbacks": [], "next_cursor": None})
    query = select(*_COLUMNS)
    params: dict[str, Any] = {"limit": limit + 1}
    for column, name, value in (
        (_table.c.status, "status", f.status),
        (_table.c.source_session_id, "session", f.source_session_id),
        (_table.c.to_number, "to_number", f.to_number),
    ):
        if value is not None:
            query = query.where(column == bindparam(name))
            params[name] = value
    if f.scheduled_after is not None:
        query = query.where(_table.c.scheduled_at >= bindparam("after", type_=UTCDateTime()))
        params["after"] = f.scheduled_after
    if f.scheduled_before is not None:
        query = query.where(_table.c.scheduled_at < bindparam("before", type_=UTCDateTime()))
        params["before"] = f.scheduled_before
    if position is not None:
        at = bindparam("cursor_at", type_=UTCDateTime())
        query = query.where(
            tuple_(_table.c.created_at, _table.c.id)
            < tuple_(at, bindparam("cursor_id", type_=String()))
        )
        params |= {"cursor_at": position.created_at, "cursor_id": position.id}
    query = query.order_by(_table.c.created_at.desc(), _table.c.id.desc()).limit(bindparam("limit"))
    rows = conn.execute(query, params).all()
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = None
    if more:
        last = dict(zip(PUBLIC_FIELDS, rows[-1], strict=True))
        next_cursor = cursors.encode(cursors.Position(last["created_at"], last["id"]), scope)
    callbacks = [dict(zip(PUBLIC_FIELDS, row, strict=True)) for row in rows]
    return dumps({"callbacks": callbacks, "next_cursor": next_cursor})
