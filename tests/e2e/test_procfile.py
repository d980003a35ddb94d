"""The Procfile, started with honcho as an operator would, places a callback and the web
process's /metrics shows it."""

from __future__ import annotations

import re
import subprocess
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.support.processes import command, free_port, pipeline_env, processes, wait_until
from tests.support.provider import Provider
from worker.creation import schedule
from worker.db.models import Callback
from worker.status import Status
from worker.validation import NewCallback

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def _port(log: str) -> int | None:
    found = re.search(r"Uvicorn running on http://[^:]+:(\d+)", log)
    return int(found.group(1)) if found else None


def test_honcho_runs_the_procfile_and_places_a_callback(
    pg_url: str,
    pg_sessions: sessionmaker[Session],
    redis_url: str,
    provider: Provider,
    tmp_path: Path,
) -> None:
    metrics_port = free_port()
    env = pipeline_env(
        pg_url,
        redis_url,
        provider,
        tmp_path,
        POLL_INTERVAL="0.5",
        # Free ports, not fixed ones: another run on this machine may hold a fixed one.
        PORT=str(free_port()),
        METRICS_PORT=str(metrics_port),
    )
    release = subprocess.run(
        command("honcho", "-f", str(ROOT / "Procfile"), "run", "callbacks", "migrate"),
        cwd=tmp_path, env=env, capture_output=True, timeout=120,
    )  # fmt: skip
    assert release.returncode == 0, release.stderr.decode()
    now = datetime.now(UTC)
    with pg_sessions.begin() as s:
        (cb,) = schedule(
            s,
            [NewCallback(organization_id="o", to_number="+12015551234", scheduled_at=now)],
            now=now,
            actor="test",
        )
    with processes(tmp_path, env) as procs:
        procs.start(
            "honcho", "honcho", "-f", str(ROOT / "Procfile"), "start", "web", "worker", "beat"
        )

        def placed() -> bool:
            with pg_sessions() as s:
                return s.get_one(Callback, cb.id).status is Status.DISPATCHED

        wait_until(placed, timeout=90, what="the callback to be placed via the Procfile")
        # With several server processes uvicorn's supervisor logs "running on" once it has
        # bound the port; a server process listens on it after its own start-up.
        wait_until(
            lambda: (
                _port(procs.log("honcho")) is not None
                and "Application startup complete" in procs.log("honcho")
            ),
            timeout=30,
            what="web to listen",
        )
        port = _port(procs.log("honcho"))
        web = _scrape(f"http://127.0.0.1:{port}/metrics")
        worker = _scrape(f"http://127.0.0.1:{metrics_port}/metrics")
        # honcho answers SIGTERM by stopping every process and exiting 128 + 15.
        assert procs.stop("honcho") == 143, procs.log("honcho")[-3000:]
        assert "Traceback" not in procs.log("honcho")
    assert provider.calls.keys() == {cb.idempotency_key}
    assert re.search(r"^callbacks_due_backlog 0\.0$", web, re.M), web
    assert re.search(
        r'^callbacks_dispatch_outcomes_total\{outcome="dispatched"\} 1\.0$', worker, re.M
    )
    assert re.search(r"^callbacks_claimed_total 1\.0$", worker, re.M)


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310  (our own local endpoint)
        return str(r.read().decode())
