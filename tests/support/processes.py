"""Real processes for end-to-end tests: the same commands the Procfile runs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support.provider import Provider

BIN = Path(sys.executable).parent


def command(*argv: str) -> list[str]:
    """Resolve ``celery`` / ``callbacks`` to this environment's console scripts."""
    return [str(BIN / argv[0]), *argv[1:]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def service_env(**values: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "BROKER_", "SPEKO_"))
    }
    # Process tests run in real time at any hour: an all-day calling window keeps them from
    # being deferred to the morning (windows are tested with a frozen clock).
    env.update(CALLING_WINDOW_START="00:00", CALLING_WINDOW_END="24:00")
    env.update(values)
    return env


def pipeline_env(
    pg_url: str, broker_url: str, provider: Provider, workdir: Path, **overrides: str
) -> dict[str, str]:
    """Environment for worker/beat/api processes against the test database, broker and
    provider stand-in."""
    return service_env(
        DATABASE_URL=pg_url,
        BROKER_URL=broker_url,
        SPEKO_API_URL=provider.url,
        SPEKO_API_KEY=provider.api_key,
        DATA_DIR=str(workdir),
        **overrides,
    )


class Processes:
    def __init__(self, workdir: Path, env: Mapping[str, str]) -> None:
        self.workdir = workdir
        self.env = dict(env)
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *argv: str) -> subprocess.Popen[bytes]:
        with (self.workdir / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                command(*argv), cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        self.running[name] = proc
        return proc

    def run(self, *argv: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            command(*argv),
            cwd=self.workdir,
            env=self.env,
            input=stdin,
            capture_output=True,
            timeout=120,
        )

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        proc = self.running.pop(name)
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()

    def log(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for name in list(self.running):
            self.stop(name)


@contextmanager
def processes(workdir: Path, env: Mapping[str, str]) -> Iterator[Processes]:
    procs = Processes(workdir, env)
    try:
        yield procs
    finally:
        procs.stop_all()


def wait_until(check: Callable[[], bool], *, timeout: float, what: str) -> float:
    """Poll ``check`` until true; the real processes under test need real time to work."""
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)
    return time.monotonic() - began


def api_ready(http: httpx.Client) -> bool:
    """Whether the ``callbacks api`` process behind ``http`` answers ``/readyz`` 200."""
    try:
        return http.get("/readyz").status_code == 200
    except httpx.TransportError:
        return False
