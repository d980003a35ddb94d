"""The async reads (PostgreSQL, on the event loop) answer byte for byte what the sync reads
answer, take each other's cursors, and check keys as ``worker.apikeys.verify`` does."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import orjson
import pytest
from sqlalchemy import make_url
from sqlalchemy.orm import Session, sessionmaker

from tests.integration.api.conftest import NOW
from tests.support.factories import T0, make_callback
from worker.actions import CallbackNotFound
from worker.api import reads
from worker.api.cursors import BadCursor
from worker.api.errors import Unavailable
from worker.api.readers import PoolReader, ThreadReader, reader_for
from worker.apikeys import create_key, revoke_key, verify
from worker.db.engine import make_engine, make_sessions
from worker.db.read_pool import ReadPool
from worker.status import Status

CLOSED = "postgresql://postgres@127.0.0.1:1/none"


@pytest.fixture
def reader(pg_url: str) -> PoolReader:
    conninfo = make_url(pg_url).set(drivername="postgresql").render_as_string(hide_password=False)
    return PoolReader(ReadPool(conninfo, size=2))


@pytest.fixture
def rows(pg_sessions: sessionmaker[Session]) -> list[str]:
    """Callbacks with every kind of field: nulls, microseconds, nested and unusual metadata."""
    with pg_sessions.begin() as s:
        made = [
            make_callback(s, created_at=T0 - timedelta(hours=2, microseconds=i * 7)).id
            for i in range(7)
        ]
        made.append(
            make_callback(
                s,
                Status.DISPATCHED,
                metadata={"crm": {"ids": [1, 2.5, None, True]}, "name": "Zoë \u2603"},
                reason="asked to be called back",
                call_outcome="completed",
                call_outcome_at=T0 + timedelta(minutes=3, microseconds=1),
            ).id
        )
        # Beyond 64 bits: orjson refuses it and the slow JSON path answers.
        made.append(make_callback(s, Status.FAILED, metadata={"big": 2**70}).id)
        made.append(make_callback(s, Status.CANCELLED, org="org_b").id)
    return made


def _sync_get(sessions: sessionmaker[Session], org: str, callback_id: str) -> bytes:
    with reads.read_connection(sessions) as conn:
        return reads.callback_json(conn, org, callback_id)


def _sync_page(
    sessions: sessionmaker[Session], f: reads.ListFilter, limit: int, cursor: str | None
) -> bytes:
    with reads.read_connection(sessions) as conn:
        return reads.page_json(conn, "org_a", f, limit=limit, cursor=cursor)


def test_a_callback_is_the_same_document(
    reader: PoolReader, pg_sessions: sessionmaker[Session], rows: list[str]
) -> None:
    async def gets() -> list[bytes]:
        return [await reader.callback("org_a", i) for i in rows[:-1]]

    assert asyncio.run(gets()) == [_sync_get(pg_sessions, "org_a", i) for i in rows[:-1]]


@pytest.mark.parametrize("callback_id", ["cb_missing", "", "x" * 500, "nul\x00", "other org"])
def test_not_found_as_before(reader: PoolReader, rows: list[str], callback_id: str) -> None:
    callback_id = rows[-1] if callback_id == "other org" else callback_id
    with pytest.raises(CallbackNotFound):
        asyncio.run(reader.callback("org_a", callback_id))


@pytest.mark.parametrize(
    "filters",
    [
        reads.ListFilter(),
        reads.ListFilter(status=Status.SCHEDULED),
        reads.ListFilter(to_number="+12015551234", scheduled_after=NOW, scheduled_before=T0),
        reads.ListFilter(source_session_id="nothing matches"),
        reads.ListFilter(source_session_id="nul\x00"),
    ],
)
def test_pages_are_the_same_documents_and_take_each_others_cursors(
    reader: PoolReader,
    pg_sessions: sessionmaker[Session],
    rows: list[str],
    filters: reads.ListFilter,
) -> None:
    async def page(cursor: str | None) -> bytes:
        return await reader.page("org_a", filters, limit=2, cursor=cursor)

    cursor: str | None = None
    pages = 0
    while True:
        body = asyncio.run(page(cursor))
        assert body == _sync_page(pg_sessions, filters, 2, cursor)
        next_cursor = orjson.loads(body)["next_cursor"]
        if next_cursor is None:
            break
        cursor = next_cursor
        pages += 1
    if filters == reads.ListFilter():
        assert pages == 4  # 9 of org_a's, 2 a page


def test_a_cursor_of_another_list_is_refused(reader: PoolReader, rows: list[str]) -> None:
    async def first_then_other() -> None:
        body = await reader.page("org_a", reads.ListFilter(), limit=2, cursor=None)
        cursor = orjson.loads(body)["next_cursor"]
        await reader.page("org_b", reads.ListFilter(), limit=2, cursor=cursor)

    with pytest.raises(BadCursor):
        asyncio.run(first_then_other())


def test_keys_are_checked_as_verify_checks_them(
    reader: PoolReader, pg_sessions: sessionmaker[Session]
) -> None:
    with pg_sessions.begin() as s:
        live, live_token = create_key(s, "org_a", now=NOW)
        gone, gone_token = create_key(s, "org_b", now=NOW)
        revoke_key(s, gone.id, now=NOW)
    tokens = [
        live_token,
        gone_token,
        "sk_live_unknown",
        live_token[8:],  # without its prefix
        live_token + "x",
        "sk_live_" + "a" * 300,
        "",
        "sk_live_\udcff",
    ]

    async def checked() -> list[str | None]:
        found = [await reader.key(t) for t in tokens]
        return [None if k is None else f"{k.id} {k.organization_id} {k.created_at}" for k in found]

    with pg_sessions() as s:
        expected = []
        for t in tokens:
            k = verify(s, t)
            expected.append(None if k is None else f"{k.id} {k.organization_id} {k.created_at}")
    assert asyncio.run(checked()) == expected
    assert expected[0] == f"{live.id} org_a {NOW}"


def test_an_unreachable_database_is_unavailable() -> None:
    reader = PoolReader(ReadPool(CLOSED, size=1))
    with pytest.raises(Unavailable) as raised:
        asyncio.run(reader.callback("org_a", "cb_1"))
    assert raised.value.headers == {"Retry-After": "2"}


def test_postgresql_reads_on_the_loop_when_asked_sqlite_in_the_threadpool(
    pg_sessions: sessionmaker[Session], sqlite_sessions: sessionmaker[Session]
) -> None:
    assert isinstance(reader_for(pg_sessions, on_loop=True, pool_size=1), PoolReader)
    assert isinstance(reader_for(pg_sessions, on_loop=False, pool_size=1), ThreadReader)
    assert isinstance(reader_for(sqlite_sessions, on_loop=True, pool_size=1), ThreadReader)


def test_the_threadpool_reader_answers_the_same(sqlite_sessions: sessionmaker[Session]) -> None:
    with sqlite_sessions.begin() as s:
        made = make_callback(s).id
        _, token = create_key(s, "org_a", now=NOW)
    reader = ThreadReader(sqlite_sessions)

    async def read() -> tuple[bytes, bytes, str | None]:
        key = await reader.key(token)
        return (
            await reader.callback("org_a", made),
            await reader.page("org_a", reads.ListFilter(), limit=5, cursor=None),
            None if key is None else key.organization_id,
        )

    got, page, org = asyncio.run(read())
    assert got == _sync_get(sqlite_sessions, "org_a", made)
    assert page == _sync_page(sqlite_sessions, reads.ListFilter(), 5, None)
    assert org == "org_a"


def test_reader_for_passes_the_sessions_own_database(pg_url: str) -> None:
    engine = make_engine(pg_url, pool_size=1)
    reader = reader_for(make_sessions(engine), on_loop=True, pool_size=1)
    assert isinstance(reader, PoolReader)
    assert make_url(reader.pool.conninfo) == make_url(pg_url).set(drivername="postgresql")
    engine.dispose()
