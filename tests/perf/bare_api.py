"""The load benchmark's baseline: the same two reads with nothing but one database round trip.

    BARE_DATABASE_URL=postgresql://... uvicorn tests.perf.bare_api:app --workers N

No auth, no validation, no ORM: a Starlette endpoint per read, a small psycopg connection
pool (autocommit, so one round trip per request), ``json.dumps`` of the row. The
organization for the list comes from an ``X-Org`` header the load script sends (the
real API takes it from the key). What the real API costs above this is its own.
"""

from __future__ import annotations

import json
import os
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

COLUMNS = (
    "id, organization_id, source_session_id, created_session_id, agent_id, phone_number_id, "
    "to_number, from_number, scheduled_at, status, reason, instructions, summary, "
    "pipeline_config, metadata, failure_cause, attempted_at, dispatched_at, cancelled_at, "
    "created_at, updated_at"
)
GET = f"SELECT {COLUMNS} FROM callbacks WHERE id = %s"
LIST = (
    f"SELECT {COLUMNS} FROM callbacks WHERE organization_id = %s "
    "ORDER BY created_at DESC, id DESC LIMIT %s"
)
POOL_SIZE = 8
"""Connections per process: the database is shared with other work (max_connections)."""

Conn = psycopg.Connection[dict[str, Any]]
_idle: queue.Queue[Conn] = queue.Queue()
_opened = 0
_lock = threading.Lock()


@contextmanager
def _connection() -> Iterator[Conn]:
    global _opened
    with _lock:
        grow = _idle.empty() and _opened < POOL_SIZE
        _opened += grow
    if grow:
        conn = psycopg.connect(
            os.environ["BARE_DATABASE_URL"], autocommit=True, row_factory=dict_row
        )
    else:
        conn = _idle.get()
    try:
        yield conn
    finally:
        _idle.put(conn)


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body, default=str), status, media_type="application/json")


def get_callback(request: Request) -> Response:
    with _connection() as conn:
        row = conn.execute(GET, (request.path_params["id"],)).fetchone()
    return _json(row) if row is not None else _json({"error": "not found"}, 404)


def list_callbacks(request: Request) -> Response:
    limit = int(request.query_params.get("limit", "25"))
    org = request.headers.get("x-org", "")
    with _connection() as conn:
        rows = conn.execute(LIST, (org, limit)).fetchall()
    return _json({"callbacks": rows})


app = Starlette(
    routes=[
        Route("/v1/callbacks", list_callbacks),
        Route("/v1/callbacks/{id}", get_callback),
    ]
)
