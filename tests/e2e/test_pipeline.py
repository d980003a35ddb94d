"""End to end: real `celery -A worker worker` and two `celery -A worker beat` on Redis and
PostgreSQL place past-due callbacks through the provider stand-in, each exactly once."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.support.processes import free_port, pipeline_env, processes, service_env, wait_until
from tests.support.provider import Provider
from worker.db.models import Callback
from worker.status import Status

pytestmark = pytest.mark.e2e
CALLBACKS = 500


def _count(sessions: sessionmaker[Session], status: Status) -> int:
    with sessions() as s:
        return s.scalar(select(func.count()).where(Callback.status == status)) or 0


def test_worker_and_two_beats_place_past_due_callbacks_exactly_once(
    pg_url: str,
    pg_sessions: sessionmaker[Session],
    redis_url: str,
    provider: Provider,
    tmp_path: Path,
) -> None:
    env = pipeline_env(
        pg_url,
        redis_url,
        provider,
        tmp_path,
        POLL_INTERVAL="0.5",
    )
    past = datetime.now(UTC) - timedelta(minutes=10)
    lines = [
        json.dumps(
            {
                "organization_id": f"org_{i % 3}",
                "to_number": "+12015551234",
                "scheduled_at": (past + timedelta(milliseconds=i)).isoformat(),
                "agent_id": "agent_1",
                "reason": f"e2e {i}",
            }
        )
        for i in range(CALLBACKS)
    ]
    (tmp_path / "callbacks.jsonl").write_text("\n".join(lines) + "\n")
    with processes(tmp_path, env) as procs:
        created = procs.run("callbacks", "schedule", "--file", "callbacks.jsonl")
        assert created.returncode == 0, created.stderr.decode()
        assert len(created.stdout.splitlines()) == CALLBACKS
        procs.start("worker", "celery", "-A", "worker", "worker")
        procs.start("beat1", "celery", "-A", "worker", "beat")
        procs.start("beat2", "celery", "-A", "worker", "beat")
        began = time.monotonic()
        try:
            wait_until(
                lambda: _count(pg_sessions, Status.DISPATCHED) == CALLBACKS,
                timeout=180,
                what=f"{CALLBACKS} callbacks dispatched",
            )
        except AssertionError:
            print(procs.log("worker")[-5000:])
            raise
        seconds = time.monotonic() - began

        # Manual path: a callback that is not due for a day is placed now.
        later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        one = procs.run(
            "callbacks", "schedule", "--org", "org_m", "--to", "+14155552671", "--at", later
        )
        assert one.returncode == 0, one.stderr.decode()
        manual_id = json.loads(one.stdout)["id"]
        sent = procs.run(
            "celery",
            "-A",
            "worker",
            "call",
            "callbacks.dispatch",
            "--args",
            json.dumps([manual_id]),
        )
        assert sent.returncode == 0, sent.stderr.decode()
        wait_until(
            lambda: _count(pg_sessions, Status.DISPATCHED) == CALLBACKS + 1,
            timeout=60,
            what="the manual dispatch",
        )
        for name in ("beat1", "beat2", "worker"):
            assert procs.stop(name) == 0, procs.log(name)[-3000:]

    with pg_sessions() as s:
        rows = s.scalars(select(Callback)).all()
    keys = [r.headers["idempotency-key"] for r in provider.requests]
    assert len(keys) == len(set(keys)) == CALLBACKS + 1, "each callback dialed exactly once"
    assert provider.duplicates == 0
    for cb in rows:
        assert cb.status is Status.DISPATCHED
        assert cb.created_session_id == provider.calls[cb.idempotency_key]
        assert cb.attempts == 1
    print(f"\ne2e: {CALLBACKS} callbacks, 1 worker + 2 beats, all dispatched in {seconds:.1f}s")


def test_embedded_default_demo_reaches_dispatched_with_no_servers(tmp_path: Path) -> None:
    """The README's first command: SQLite file, file broker, log dialer, nothing else."""
    # A free port for its API: `callbacks run` now stops if a child (the API on a taken
    # port) cannot start, and 8000 may be in use.
    with processes(tmp_path, service_env(PORT=str(free_port()))) as procs:
        result = procs.run("callbacks", "run", "--demo")
    out = result.stdout.decode()
    assert result.returncode == 0, out[-3000:] + result.stderr.decode()[-3000:]
    summary = [line for line in out.splitlines() if line.startswith('{"cb_')]
    assert summary, out[-3000:]
    final = json.loads(summary[-1])
    assert len(final) == 3
    assert set(final.values()) == {"dispatched"}
    assert (tmp_path / ".callbacks" / "callbacks.db").exists()
