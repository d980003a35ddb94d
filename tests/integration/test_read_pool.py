"""The API's async read pool against a real PostgreSQL: it hands out live connections only,
reconnects after the server ends them, runs a read once more on a fresh connection when
its connection is lost mid-read, fails fast when the server refuses, and bounds itself."""

from __future__ import annotations

import asyncio
import time

import psycopg
import pytest
from sqlalchemy import make_url

from tests.support.databases import ADMIN_URL
from worker.db.read_pool import Conn, PoolTimeout, ReadPool

CLOSED = "postgresql://postgres@127.0.0.1:1/none"


@pytest.fixture
def conninfo(pg_url: str) -> str:
    return make_url(pg_url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _pid(conn: Conn) -> int:
    cur = await conn.execute("SELECT pg_backend_pid()")
    row = await cur.fetchone()
    assert row is not None
    return int(str(row[0]))


def _terminate(pid: int) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def test_connections_the_server_ended_are_replaced_at_checkout(conninfo: str) -> None:
    async def scenario() -> None:
        pool = ReadPool(conninfo, size=2)
        first = await pool.run(_pid)
        _terminate(first)  # as a restart or a failover ends it
        await asyncio.sleep(0.2)  # the server's goodbye reaches our socket
        calls = 0

        async def read(conn: Conn) -> int:
            nonlocal calls
            calls += 1
            return await _pid(conn)

        second = await pool.run(read)
        assert second != first
        assert calls == 1  # dropped at checkout: the read never met the dead connection
        await pool.close()

    asyncio.run(scenario())


def test_a_read_that_loses_its_connection_runs_once_more_on_a_fresh_one(conninfo: str) -> None:
    async def scenario() -> None:
        pool = ReadPool(conninfo, size=2)
        pids: list[int] = []

        async def read(conn: Conn) -> str:
            pids.append(await _pid(conn))
            if len(pids) == 1:
                # Lost mid-read, without warning (nothing was readable at checkout).
                await conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
            return "read"

        assert await pool.run(read) == "read"
        assert len(pids) == 2
        assert pids[0] != pids[1]
        await pool.close()

    asyncio.run(scenario())


def test_a_read_is_tried_twice_at_most(conninfo: str) -> None:
    async def scenario() -> None:
        pool = ReadPool(conninfo, size=1)
        calls = 0

        async def read(conn: Conn) -> None:
            nonlocal calls
            calls += 1
            await conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")

        with pytest.raises(psycopg.OperationalError):
            await pool.run(read)
        assert calls == 2
        await pool.close()

    asyncio.run(scenario())


def test_a_failed_statement_is_not_run_again(conninfo: str) -> None:
    async def scenario() -> None:
        pool = ReadPool(conninfo, size=1)
        calls = 0

        async def read(conn: Conn) -> None:
            nonlocal calls
            calls += 1
            await conn.execute("SELECT * FROM no_such_table")

        with pytest.raises(psycopg.errors.UndefinedTable):
            await pool.run(read)
        assert calls == 1
        assert await pool.run(_pid) > 0  # and its connection is still good
        await pool.close()

    asyncio.run(scenario())


def test_a_refused_connect_fails_at_once() -> None:
    async def scenario() -> None:
        pool = ReadPool(CLOSED, size=2)
        began = time.monotonic()
        with pytest.raises(psycopg.OperationalError):
            await pool.run(_pid)
        # No background reconnect loop to wait for (an order of magnitude under the
        # pool's timeout; not a timing assertion on the work itself).
        assert time.monotonic() - began < 10
        await pool.close()

    asyncio.run(scenario())


def test_never_more_connections_than_its_size(conninfo: str) -> None:
    async def scenario() -> None:
        pool = ReadPool(conninfo, size=3)
        pids: set[int] = set()

        async def read(conn: Conn) -> None:
            pids.add(await _pid(conn))
            await conn.execute("SELECT pg_sleep(0.05)")

        await asyncio.gather(*(pool.run(read) for _ in range(12)))
        assert len(pids) == 3
        await pool.close()

    asyncio.run(scenario())


def test_waiting_longer_than_the_timeout_is_a_pool_timeout(conninfo: str) -> None:
    async def scenario() -> None:
        pool = ReadPool(conninfo, size=1, timeout=0.2)
        release = asyncio.Event()

        async def hold(conn: Conn) -> None:
            await release.wait()

        holder = asyncio.create_task(pool.run(hold))
        await asyncio.sleep(0.05)
        with pytest.raises(PoolTimeout):
            await pool.run(_pid)
        release.set()
        await holder
        await pool.close()

    asyncio.run(scenario())


def test_a_cancelled_read_does_not_return_its_busy_connection(conninfo: str) -> None:
    async def scenario() -> None:
        pool = ReadPool(conninfo, size=1)

        async def slow(conn: Conn) -> None:
            await conn.execute("SELECT pg_sleep(5)")

        task = asyncio.create_task(pool.run(slow))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await pool.run(_pid) > 0  # a fresh connection, not the one mid-statement
        await pool.close()

    asyncio.run(scenario())


def test_connections_are_recycled(conninfo: str) -> None:
    now = [0.0]

    async def scenario() -> None:
        pool = ReadPool(conninfo, size=1, recycle=10, clock=lambda: now[0])
        first = await pool.run(_pid)
        now[0] = 5
        assert await pool.run(_pid) == first
        now[0] = 11
        assert await pool.run(_pid) != first
        await pool.close()

    asyncio.run(scenario())


def test_a_pool_used_from_another_event_loop_starts_afresh(conninfo: str) -> None:
    pool = ReadPool(conninfo, size=1)
    first = asyncio.run(pool.run(_pid))
    assert asyncio.run(pool.run(_pid)) != first  # the first loop's connection was closed
    asyncio.run(pool.close())
