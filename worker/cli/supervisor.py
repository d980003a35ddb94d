"""Child processes of ``callbacks run``, watched: a child that dies is restarted, and one
that keeps dying stops the whole run with its name and its last lines.

Each child runs in its own session, so Ctrl-C at the terminal reaches only
``callbacks run``, which stops the children once, with SIGTERM (Celery's warm shutdown:
a second SIGINT would make it a cold one). Their output passes through here, masked
(:mod:`worker.redact`), onto our standard error.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import IO

MAX_RESTARTS = 3
"""Restarts of one child before ``callbacks run`` gives up on it."""
HEALTHY_AFTER = 60.0
"""A child that ran this long before it died gets its restarts back: an occasional
crash is restarted forever, a crash loop is not."""
LAST_LINES = 15


def _die_with_parent() -> None:
    """Linux: the kernel sends a child SIGTERM if ``callbacks run`` dies without cleaning
    up (SIGKILL, a test's timeout), so no worker or server is left behind."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class Child:
    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        out: IO[str],
        redact: Callable[[str], str],
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.out = out
        self.redact = redact
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.restarts = 0
        self.last_lines: collections.deque[str] = collections.deque(maxlen=LAST_LINES)
        self._relay: threading.Thread | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        self.last_lines.clear()
        self.proc = subprocess.Popen(  # noqa: S603 (our own commands, no shell)
            self.argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.started_at = time.monotonic()
        self._relay = threading.Thread(
            target=self._copy_output, args=(self.proc,), name=f"relay-{self.name}", daemon=True
        )
        self._relay.start()

    def _copy_output(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = self.redact(raw.decode("utf-8", errors="replace"))
            self.last_lines.append(line.rstrip("\n"))
            self.out.write(line)
            self.out.flush()

    def poll(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def signal(self, signum: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        if self._relay is not None:
            self._relay.join(timeout=5)
        return code


class ChildFailed(Exception):
    """A child died more often than it may be restarted."""


class Supervisor:
    def __init__(self, children: Sequence[Child], say: Callable[[str], None]) -> None:
        self.children = list(children)
        self.say = say

    def start(self) -> None:
        for child in self.children:
            child.start()

    def check(self) -> None:
        """Restart a child that died; raise ``ChildFailed`` for one that keeps dying."""
        for child in self.children:
            code = child.poll()
            if code is None:
                continue
            ran = time.monotonic() - child.started_at
            if ran >= HEALTHY_AFTER:
                child.restarts = 0
            what = f"{child.name} (pid {child.pid}) {describe_exit(code)}"
            if child.restarts >= MAX_RESTARTS:
                child.wait(timeout=1)  # its last lines are read
                last = "\n  ".join(child.last_lines) or "(no output)"
                raise ChildFailed(
                    f"{what}, after {child.restarts} restarts; giving up. Its last lines:\n  {last}"
                )
            child.restarts += 1
            child.start()
            self.say(
                f"{what}; restarted it as pid {child.pid} "
                f"(restart {child.restarts} of {MAX_RESTARTS})"
            )

    def kill(self) -> None:
        for child in self.children:
            child.signal(signal.SIGKILL)

    def stop(self, timeout: float) -> dict[str, int]:
        """SIGTERM to every child (warm shutdown), then wait; kill what outlives it."""
        for child in self.children:
            child.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        return {
            child.name: child.wait(max(0.1, deadline - time.monotonic())) for child in self.children
        }


def child_env(**values: str) -> dict[str, str]:
    # Unbuffered, so a child's lines reach the terminal as they are written.
    return {**os.environ, "PYTHONUNBUFFERED": "1", **values}
