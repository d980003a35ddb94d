"""``callbacks run``: the whole product on one machine with nothing but Python.

Migrates the database, then runs three supervised children (:mod:`worker.cli.supervisor`):
a Celery worker, beat, and the admin API (the same commands the Procfile runs). It says
what it serves and where its data lives; the children's logs show each callback's
progress. SIGINT (Ctrl-C) and SIGTERM stop it the same way and it exits 0; a child that
keeps dying stops it with exit code 1 and the child's name. With ``--demo`` it
schedules a few callbacks seconds ahead, shows each transition, and exits once all are
placed.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from types import FrameType

from sqlalchemy import select

from worker.cli.api_commands import default_port
from worker.cli.context import CliContext, cli_context
from worker.cli.supervisor import Child, ChildFailed, Supervisor, child_env, describe_exit
from worker.creation import schedule
from worker.db import migrate as migrations
from worker.db.models import Callback
from worker.pacing.orgs import set_window
from worker.pacing.windows import DAY_MINUTES, Window
from worker.redact import redact_url, redactor_for
from worker.settings import Settings
from worker.status import SETTLED
from worker.validation import NewCallback

DEMO_DEADLINE = 120.0
STOP_TIMEOUT = 60.0
"""Warm shutdown: in-flight dials finish (each is bounded by the dialer's timeouts)."""

# Celery warns on every start as root, because a worker that accepts pickle would run
# code from any message as root. Ours accepts JSON only (celery_config), and Celery
# still refuses to start if that ever changes; `callbacks run` says it in one line.
ROOT_WARNING = "ignore:You're running the worker with superuser privileges"


def child_commands(settings: Settings, host: str, port: int) -> dict[str, list[str]]:
    celery = [sys.executable, "-W", ROOT_WARNING, "-m", "celery", "-A", "worker", "--quiet"]
    level = ["--loglevel", settings.log_level]
    return {
        # One worker on the machine: nobody to mingle or gossip with.
        "worker": [*celery, "worker", *level, "--without-mingle", "--without-gossip"],
        "beat": [*celery, "beat", *level],
        "api": [
            sys.executable,
            "-m",
            "worker.cli.main",
            "api",
            "--host",
            host,
            "--port",
            str(port),
        ],
    }


def say(message: str) -> None:
    print(f"callbacks run: {message}", flush=True)


class StopRequest:
    """SIGINT and SIGTERM ask for the same clean stop; a second one while stopping does
    not wait for in-flight work: ``force`` kills the children."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal_name = ""
        self.force: Callable[[], None] = lambda: None

    def install(self) -> None:
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if not self.event.is_set():
            self.signal_name = signal.Signals(signum).name
            self.event.set()
        else:
            self.force()

    def wait(self, seconds: float) -> bool:
        return self.event.wait(seconds)


def where(settings: Settings) -> list[str]:
    database = settings.effective_database_url
    broker = settings.effective_broker_url
    lines = []
    if database.startswith("sqlite:///"):
        lines.append(f"database: SQLite file {database.removeprefix('sqlite:///')}")
    else:
        lines.append(f"database: {redact_url(database)}")
    if broker.startswith("filesystem"):
        lines.append(f"broker:   folder {(settings.data_dir / 'broker').resolve()}")
    else:
        lines.append(f"broker:   {redact_url(broker)}")
    return lines


def run_embedded(settings: Settings, *, demo: bool) -> int:
    stop = StopRequest()
    stop.install()
    migrations.upgrade(settings.effective_database_url)
    # The bare `callbacks api` defaults, made explicit so the URL printed is the one served.
    host = "127.0.0.1" if settings.embedded else "0.0.0.0"  # noqa: S104
    port = default_port()
    redact = redactor_for(settings)
    env = child_env()
    supervisor = Supervisor(
        [
            Child(name, argv, env=env, out=sys.stderr, redact=redact)
            for name, argv in child_commands(settings, host, port).items()
        ],
        say,
    )
    stop.force = supervisor.kill
    for line in where(settings):
        say(line)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        say(
            "running as root: allowed, as the worker accepts JSON messages only; "
            "an ordinary user is still better"
        )
    supervisor.start()
    say(
        f"admin API on http://{host}:{port} "
        f"(started {', '.join(f'{c.name} pid {c.pid}' for c in supervisor.children)}); "
        "Ctrl-C stops"
    )
    code = 1  # unless the run ends as it should
    try:
        if demo:
            # Placed, or stopped by the user: 0; not placed in time: 1.
            code = 0 if _demo(settings, supervisor, stop) or stop.event.is_set() else 1
        else:
            while not stop.wait(0.5):
                supervisor.check()
            code = 0
    except ChildFailed as exc:
        say(str(exc))
    finally:
        # Whatever ended the run (even an error of ours), the children stop with it.
        say(f"stopping ({stop.signal_name})" if stop.signal_name else "stopping")
        for name, exit_code in supervisor.stop(STOP_TIMEOUT).items():
            # uvicorn re-raises the SIGTERM it handled once it has shut down cleanly.
            if exit_code not in (0, -signal.SIGTERM) and code == 0:
                say(f"{name} {describe_exit(exit_code)} while stopping")
                code = 1
    say("stopped" if code == 0 else f"stopped with errors (exit code {code})")
    return code


def _demo(settings: Settings, supervisor: Supervisor, stop: StopRequest) -> bool:
    with cli_context(settings) as ctx:
        return _watch_demo(ctx, supervisor, stop)


def _watch_demo(ctx: CliContext, supervisor: Supervisor, stop: StopRequest) -> bool:
    sessions, now = ctx.sessions, ctx.clock.now()
    new = [
        NewCallback(
            organization_id="org_demo",
            to_number="+12015550123",
            scheduled_at=now + timedelta(seconds=3 + 2 * i),
            reason="demo: the caller asked to be called back",
        )
        for i in range(3)
    ]
    with sessions.begin() as session:
        # The demo runs at any hour: its organization may be called around the clock.
        set_window(session, "org_demo", Window(0, DAY_MINUTES), None, now=now)
        created = schedule(session, new, now=now, actor="cli", lateness=ctx.settings.lateness)
        ids = [cb.id for cb in created]
    print(f"demo: scheduled {len(ids)} callbacks a few seconds ahead: {', '.join(ids)}", flush=True)
    seen: dict[str, str] = {}
    deadline = time.monotonic() + DEMO_DEADLINE
    while time.monotonic() < deadline and not stop.wait(0.2):
        supervisor.check()
        with sessions() as session:
            rows = session.scalars(select(Callback).where(Callback.id.in_(ids))).all()
        for cb in rows:
            if seen.get(cb.id) != cb.status:
                seen[cb.id] = cb.status
                print(f"demo: {cb.id} is {cb.status}", flush=True)
        if len(rows) == len(ids) and all(cb.status in SETTLED for cb in rows):
            print(json.dumps({cb.id: cb.status for cb in rows}), flush=True)
            return True
    if not stop.event.is_set():
        print("demo: not every callback was placed in time", file=sys.stderr, flush=True)
    return False
