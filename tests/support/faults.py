"""Fault injection for crash tests and the chaos harness: servers, PostgreSQL backends, locks.

Everything here acts on real servers, but only on servers the test owns: a private
``redis-server`` (:class:`PrivateRedis`, it keeps nothing on disk, so a restart loses every
queue), a private PostgreSQL cluster (:class:`PrivateCluster`) for server restarts and
stops, and this run's own database for terminated backends and held locks. Nothing here
stops or restarts the servers ``TEST_REDIS_URL`` / ``TEST_POSTGRES_URL`` name.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PrivateRedis:
    """A ``redis-server`` of this test's own, on a free port, keeping nothing on disk.

    The faults stop and start this one only: the Redis that ``TEST_REDIS_URL`` names is
    never touched (other people may be using it).
    """

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self._proc: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def up(self) -> bool:
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def start(self, timeout: float = 15) -> None:
        """Start it if it is not answering (idempotent)."""
        if self._proc is not None and self._proc.poll() is None and self.up():
            return
        log = open(self.workdir / "redis.log", "ab")  # noqa: SIM115 - the child holds it
        self._proc = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        _wait(self.up, timeout, "the private redis to start")

    def stop(self, timeout: float = 10) -> None:
        """The server exits and every queue in it is gone."""
        if self._proc is None or self._proc.poll() is not None:
            return
        # SIGTERM is a shutdown (nothing to save: --save ""). Not SHUTDOWN through redis-py:
        # its retry-on-connection-error re-sent the command to the restarted server.
        self._proc.terminate()
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout)

    def restart(self, down_for: float = 1.0) -> None:
        self.stop()
        try:
            time.sleep(down_for)
        finally:
            self.start()

    @contextmanager
    def restored(self) -> Iterator[None]:
        """Whatever happens inside (a failing assertion included), it runs again after."""
        try:
            yield
        finally:
            self.start()


@contextmanager
def private_redis(workdir: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    on_path = shutil.which(name)
    if on_path is None:
        raise RuntimeError(f"PostgreSQL's {name} not found (/usr/lib/postgresql/*/bin, PATH)")
    return on_path


def _as_postgres_user() -> list[str]:
    # initdb refuses to run as root: run the cluster as the postgres user when we are root.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--"]
    return []


class PrivateCluster:
    """A PostgreSQL cluster of this test run's own (initdb in a temporary directory, trust
    auth, 127.0.0.1 on a free port), so restarting or stopping "the database server" stops
    nobody else's. ``admin_url`` is its ``postgres`` database (libpq form)."""

    def __init__(self, root: Path | None = None) -> None:
        # Its own directory straight under the temporary root: the postgres user must be
        # able to reach it, which a pytest tmp_path (0700, root's) does not allow.
        self.root = root or Path(tempfile.mkdtemp(prefix="callbacks-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.admin_url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 120) -> None:
        subprocess.run(
            [*_as_postgres_user(), *args], check=True, capture_output=True, timeout=timeout
        )

    def init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
        self._run(
            _pg_bin("initdb"),
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
        )

    def _options(self) -> str:
        return (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )

    def up(self) -> bool:
        try:
            with psycopg.connect(self.admin_url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def start(self) -> None:
        """Start it (returns once it accepts connections); idempotent."""
        if self.up():
            return
        self._run(
            _pg_bin("pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            self._options(),
            "-l",
            str(self.root / "server.log"),
            "-w",
            "start",
        )
        _wait(self.up, 30, "the private PostgreSQL to accept connections")

    def stop(self, mode: str = "fast") -> None:
        """``fast``: every session is ended (what a restart or failover does to clients)."""
        if not (self.data / "postmaster.pid").exists():
            return
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def create_database(self, name: str) -> str:
        """An empty database in this cluster; its libpq URL."""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def remove(self) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def private_cluster(root: Path | None = None) -> Iterator[PrivateCluster]:
    cluster = PrivateCluster(root)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


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
