"""``callbacks run``: the whole product on one machine with nothing but Python.

Migrates the database, then runs a Celery worker with an embedded beat as a child
process (the same ``celery -A worker`` the Procfile uses) and the admin API as a second
one (``callbacks api``). With ``--demo`` it schedules a few callbacks seconds ahead,
shows each transition, and exits once all are placed.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import timedelta
from types import FrameType

from sqlalchemy import select

from worker.cli.context import CliContext, cli_context
from worker.creation import schedule
from worker.db import migrate as migrations
from worker.db.models import Callback
from worker.pacing.orgs import set_window
from worker.pacing.windows import DAY_MINUTES, Window
from worker.settings import Settings
from worker.status import SETTLED
from worker.validation import NewCallback

DEMO_DEADLINE = 120.0


def worker_command(settings: Settings) -> list[str]:
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker",
        "worker",
        "-B",
        "--loglevel",
        settings.log_level,
    ]


def api_command(settings: Settings) -> list[str]:
    return [sys.executable, "-m", "worker.cli.main", "api"]


def _die_with_parent() -> None:
    """Linux: the kernel sends a child SIGTERM if this process dies without cleaning up
    (SIGKILL, a test's timeout), so no worker or server is left behind."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def run_embedded(settings: Settings, *, demo: bool) -> int:
    url = settings.effective_database_url
    migrations.upgrade(url)
    print(f"database: {url}\nbroker:   {settings.effective_broker_url}", flush=True)
    child = subprocess.Popen(worker_command(settings), preexec_fn=_die_with_parent)  # noqa: S603
    api = subprocess.Popen(api_command(settings), preexec_fn=_die_with_parent)  # noqa: S603

    def forward(signum: int, _frame: FrameType | None) -> None:
        child.send_signal(signum)
        if api.poll() is None:
            api.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    try:
        if not demo:
            # The worker decides the exit: an API that could not start (port taken) is
            # reported by uvicorn, and callbacks are still placed.
            return child.wait()
        ok = _demo(settings)
        child.send_signal(signal.SIGTERM)  # warm shutdown: in-flight work finishes
        child.wait(timeout=60)
        return 0 if ok else 1
    finally:
        if api.poll() is None:
            api.send_signal(signal.SIGTERM)
            try:
                api.wait(timeout=15)
            except subprocess.TimeoutExpired:
                api.kill()
        if child.poll() is None:
            child.kill()


def _demo(settings: Settings) -> bool:
    with cli_context(settings) as ctx:
        return _watch_demo(ctx)


def _watch_demo(ctx: CliContext) -> bool:
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
    while time.monotonic() < deadline:
        with sessions() as session:
            rows = session.scalars(select(Callback).where(Callback.id.in_(ids))).all()
        for cb in rows:
            if seen.get(cb.id) != cb.status:
                seen[cb.id] = cb.status
                print(f"demo: {cb.id} is {cb.status}", flush=True)
        if len(rows) == len(ids) and all(cb.status in SETTLED for cb in rows):
            print(json.dumps({cb.id: cb.status for cb in rows}), flush=True)
            return True
        time.sleep(0.2)
    print("demo: not every callback was placed in time", file=sys.stderr, flush=True)
    return False
