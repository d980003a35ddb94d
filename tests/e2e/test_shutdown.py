"""Graceful shutdown with a real signal: SIGTERM during a slow dial lets it finish and be
recorded; nothing is left half-claimed."""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.support.processes import pipeline_env, processes, wait_until
from tests.support.provider import Provider, Received, Reply
from worker.creation import schedule
from worker.db.models import Callback
from worker.status import Status
from worker.validation import NewCallback

pytestmark = pytest.mark.e2e
DIAL_SECONDS = 3.0


def test_sigterm_mid_dial_lets_the_dial_finish_and_be_recorded(
    pg_url: str,
    pg_sessions: sessionmaker[Session],
    redis_url: str,
    provider: Provider,
    tmp_path: Path,
) -> None:
    def slow(_req: Received) -> Reply:
        return Reply(200, delay=DIAL_SECONDS)

    provider.behaviour = slow
    now = datetime.now(UTC)
    with pg_sessions.begin() as s:
        (cb,) = schedule(
            s,
            [
                NewCallback(
                    organization_id="o",
                    to_number="+12015551234",
                    scheduled_at=now - timedelta(seconds=1),
                )
            ],
            now=now,
            actor="test",
        )
    env = pipeline_env(
        pg_url,
        redis_url,
        provider,
        tmp_path,
        POLL_INTERVAL="0.2",
    )
    with processes(tmp_path, env) as procs:
        worker = procs.start("worker", "celery", "-A", "worker", "worker")
        procs.start("beat", "celery", "-A", "worker", "beat")
        wait_until(lambda: len(provider.requests) == 1, timeout=60, what="the dial to start")
        procs.stop("beat")
        worker.send_signal(signal.SIGTERM)
        began = time.monotonic()
        code = worker.wait(timeout=60)
        took = time.monotonic() - began
        log = procs.log("worker")
    assert code == 0, log[-3000:]
    with pg_sessions() as s:
        row = s.get_one(Callback, cb.id)
        others = s.scalars(select(Callback).where(Callback.status == Status.DISPATCHING)).all()
    assert row.status is Status.DISPATCHED, log[-3000:]
    assert row.created_session_id == provider.calls[row.idempotency_key]
    assert others == []
    assert "Warm shutdown" in log
    print(f"\nshutdown: SIGTERM mid-dial, worker exited {took:.1f}s later with the call recorded")
