"""Fault injection for crash tests and the chaos harness: Redis, PostgreSQL backends, locks.

Everything here acts on real servers: the shared Redis on 127.0.0.1:6379 (it keeps nothing
on disk, so a restart loses every queue) and this run's own PostgreSQL database.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
import redis

REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379
# The machine's own start command (docs: python-svc.md); nothing is saved, nothing restored.
REDIS_START = [
    "redis-server",
    "--daemonize",
    "yes",
    "--bind",
    "127.0.0.1",
    "-::1",
    "--port",
    str(REDIS_PORT),
    "--save",
    "",
    "--appendonly",
    "no",
    "--dir",
    "/var/lib/redis",
    "--logfile",
    "/var/log/redis/ci.log",
]


def redis_up() -> bool:
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def stop_redis(timeout: float = 10) -> None:
    """``SHUTDOWN NOSAVE``: the server exits and every queue in it is gone."""
    subprocess.run(
        ["redis-cli", "-h", REDIS_HOST, "-p", str(REDIS_PORT), "shutdown", "nosave"],
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    _wait(lambda: not redis_up(), timeout, "redis to stop")


def start_redis(timeout: float = 15) -> None:
    """Start the machine's Redis again if it is not answering (idempotent)."""
    if redis_up():
        return
    subprocess.run(REDIS_START, capture_output=True, timeout=timeout, check=False)
    _wait(redis_up, timeout, "redis to start")


@contextmanager
def redis_restored() -> Iterator[None]:
    """Whatever happens inside (a failing assertion included), Redis runs again after."""
    try:
        yield
    finally:
        start_redis()


def restart_redis(down_for: float = 1.0) -> None:
    stop_redis()
    try:
        time.sleep(down_for)
    finally:
        start_redis()


def libpq_url(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://", 1)


OTHER_BACKENDS = """
    SELECT pid FROM pg_stat_activity
    WHERE datname = current_database() AND pid <> pg_backend_pid()
      AND backend_type = 'client backend' AND application_name <> ALL(%s)
"""


def terminate_backends(url: str, *, spare: tuple[str, ...] = ()) -> int:
    """``pg_terminate_backend`` every other client connection to this database.

    ``spare``: application names to leave alone (the harness's own observers).
    """
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        pids = [row[0] for row in conn.execute(OTHER_BACKENDS, [list(spare)]).fetchall()]
        for pid in pids:
            conn.execute("SELECT pg_terminate_backend(%s)", [pid])
    return len(pids)


def blocked_backends(url: str) -> list[int]:
    """Backends of this database waiting for a lock someone else holds."""
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND cardinality(pg_blocking_pids(pid)) > 0"
        ).fetchall()
    return [row[0] for row in rows]


def terminate(url: str, pid: int) -> bool:
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        row = conn.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone()
    return bool(row and row[0])


def wait_for_blocked(url: str, *, timeout: float = 20) -> int:
    """The pid of the first backend found waiting on a lock (raise if none shows up)."""
    found: list[int] = []

    def check() -> bool:
        found[:] = blocked_backends(url)
        return bool(found)

    _wait(check, timeout, "a backend blocked on our lock")
    return found[0]


class HeldLock:
    """A PostgreSQL transaction, on its own connection, holding a lock until released.

    ``row(table, id)`` takes ``SELECT ... FOR UPDATE`` on one row (a worker's outcome write
    to it then waits); ``table_share(table)`` takes ``LOCK TABLE ... IN SHARE MODE`` (every
    insert into it waits). ``release()`` rolls back; safe to call twice.
    """

    def __init__(self, url: str) -> None:
        self._conn = psycopg.connect(libpq_url(url), application_name="test-lock-holder")
        self.pid: int = self._conn.info.backend_pid

    def row(self, table: str, callback_id: str) -> HeldLock:
        self._conn.execute(f"SELECT id FROM {table} WHERE id = %s FOR UPDATE", [callback_id])
        return self

    def table_share(self, table: str) -> HeldLock:
        self._conn.execute(f"LOCK TABLE {table} IN SHARE MODE")
        return self

    def release(self) -> None:
        if not self._conn.closed:
            self._conn.rollback()
            self._conn.close()


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > timeout:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)
