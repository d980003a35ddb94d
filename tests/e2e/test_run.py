"""``callbacks run`` as a person runs it: what it prints, how it stops, what it does when
a child dies, and that no password ever reaches its output."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import make_url

from tests.support.databases import REDIS_URL
from tests.support.processes import command, free_port, service_env, wait_until
from tests.support.provider import Provider

pytestmark = pytest.mark.e2e


@dataclass
class Run:
    proc: subprocess.Popen[bytes]
    workdir: Path
    port: int
    env: dict[str, str]

    @property
    def stdout(self) -> str:
        return (self.workdir / "run.out").read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return (self.workdir / "run.err").read_text(errors="replace")

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def interrupt(self, sig: int = signal.SIGINT) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=90)

    def cli(self, *argv: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            command("callbacks", *argv),
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            timeout=60,
        )


@contextmanager
def callbacks_run(workdir: Path, *argv: str, port: int = 0, **env: str) -> Iterator[Run]:
    port = port or free_port()
    full_env = service_env(PORT=str(port), DATA_DIR=str(workdir / "data"), **env)
    with (workdir / "run.out").open("wb") as out, (workdir / "run.err").open("wb") as err:
        proc = subprocess.Popen(
            command("callbacks", "run", *argv), cwd=workdir, env=full_env, stdout=out, stderr=err
        )
    run = Run(proc, workdir, port, full_env)
    try:
        yield run
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def wait_ready(run: Run) -> None:
    wait_until(
        lambda: "admin API on" in run.stdout or run.proc.poll() is not None,
        timeout=60,
        what="callbacks run to start its children",
    )
    assert run.proc.poll() is None, run.output[-3000:]

    def healthy() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{run.port}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(healthy, timeout=60, what="the admin API")


NOISE = [
    "-------------- celery@",  # the banner
    "[tasks]",
    "SecurityWarning",
    "No hostname was supplied",
    "Task callbacks.poll",  # two lines per idle poll
    "Sending due task",
    "dispatching -> dispatching",
    "Traceback",
]


def test_run_says_what_it_serves_and_where_data_lives_and_ctrl_c_exits_0(
    tmp_path: Path,
) -> None:
    with callbacks_run(tmp_path) as run:
        wait_ready(run)
        created = run.cli("schedule", "--org", "org_run", "--to", "+12015550123", "--at", _soon())
        assert created.returncode == 0, created.stderr.decode()
        cb_id = re.search(r'"id": "(cb_\w+)"', created.stdout.decode())
        assert cb_id, created.stdout.decode()
        wait_until(
            lambda: f"callback {cb_id[1]}: dispatching -> dispatched" in run.stderr,
            timeout=60,
            what="the callback's progress in the output",
        )
        assert run.interrupt(signal.SIGINT) == 0, run.output[-3000:]
    data = (tmp_path / "data").resolve()
    lines = run.stdout.splitlines()
    assert f"callbacks run: database: SQLite file {data / 'callbacks.db'}" in lines
    assert f"callbacks run: broker:   folder {data / 'broker'}" in lines
    assert any(
        line.startswith(f"callbacks run: admin API on http://127.0.0.1:{run.port} ")
        for line in lines
    ), run.stdout
    assert "callbacks run: stopping (SIGINT)" in lines
    assert lines[-1] == "callbacks run: stopped"
    assert f"1 callback: scheduled -> dispatching by poller ({cb_id[1]})" in run.stderr
    for noise in NOISE:
        assert noise not in run.output, (noise, run.output[-3000:])
    # kombu's own transport made a "control" folder wherever it was started.
    assert not (tmp_path / "control").exists()


def test_sigterm_exits_0_too(tmp_path: Path) -> None:
    with callbacks_run(tmp_path) as run:
        wait_ready(run)
        assert run.interrupt(signal.SIGTERM) == 0, run.output[-3000:]
    assert "callbacks run: stopping (SIGTERM)" in run.stdout


def test_a_killed_worker_is_restarted_and_callbacks_are_still_placed(tmp_path: Path) -> None:
    with callbacks_run(tmp_path) as run:
        wait_ready(run)
        pid = int(re.search(r"worker pid (\d+)", run.stdout)[1])  # type: ignore[index]
        os.kill(pid, signal.SIGKILL)
        wait_until(
            lambda: f"worker (pid {pid}) was killed by SIGKILL; restarted it as pid" in run.stdout,
            timeout=30,
            what="the restart",
        )
        created = run.cli("schedule", "--org", "org_run", "--to", "+12015550123", "--at", _soon())
        assert created.returncode == 0, created.stderr.decode()
        cb_id = re.search(r'"id": "(cb_\w+)"', created.stdout.decode())[1]  # type: ignore[index]
        wait_until(
            lambda: f"callback {cb_id}: dispatching -> dispatched" in run.stderr,
            timeout=60,
            what="the restarted worker to place the callback",
        )
        assert run.interrupt() == 0, run.output[-3000:]


def test_a_child_that_keeps_dying_stops_the_run_with_its_name(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with callbacks_run(tmp_path, port=taken.getsockname()[1]) as run:
            run.proc.wait(timeout=120)
    assert run.proc.returncode == 1, run.output[-3000:]
    assert re.search(
        r"callbacks run: api \(pid \d+\) exited with code \d+, after 3 restarts", run.stdout
    )
    assert "address already in use" in run.stdout.lower()


def test_no_password_reaches_the_output(tmp_path: Path, pg_url: str, provider: Provider) -> None:
    # The test servers trust local connections: the passwords are accepted and unused.
    password = "s3cretpw"  # noqa: S105 (a test value)
    database_url = make_url(pg_url).set(password=password).render_as_string(hide_password=False)
    broker_url = REDIS_URL.replace("redis://", "redis://:redispw@")
    speko_url = provider.url.replace("http://", "http://speko:spekopw@")
    with callbacks_run(
        tmp_path,
        DATABASE_URL=database_url,
        BROKER_URL=broker_url,
        SPEKO_API_URL=speko_url,
        SPEKO_API_KEY=provider.api_key,
    ) as run:
        wait_ready(run)
        status = run.cli("status")
        assert run.interrupt() == 0, run.output[-3000:]
    seen = run.output + status.stdout.decode() + status.stderr.decode()
    assert ":***@" in run.stdout  # the database line, masked
    for secret in ("s3cretpw", "redispw", "spekopw", provider.api_key):
        assert secret not in seen


def _soon() -> str:
    return (datetime.now(UTC) + timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_second_ctrl_c_kills_the_children_at_once(tmp_path: Path) -> None:
    with callbacks_run(tmp_path) as run:
        wait_ready(run)
        pids = [int(p) for p in re.findall(r"(?:worker|beat|api) pid (\d+)", run.stdout)]
        run.proc.send_signal(signal.SIGINT)
        wait_until(lambda: "stopping (SIGINT)" in run.stdout, timeout=10, what="the stop")
        assert run.interrupt(signal.SIGINT) == 1, run.output[-3000:]
    assert "was killed by SIGKILL while stopping" in run.stdout
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
