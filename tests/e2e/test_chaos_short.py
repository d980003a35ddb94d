"""The chaos harness in its CI size: 2 beats, 2 workers, a few hundred callbacks, every
kind of fault (worker SIGKILLs, one Redis restart, database connections terminated, a
provider that answers 503, 400 or hangs after placing the call). Full size:
``python -m tests.chaos``."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.chaos.harness import ChaosConfig, run_chaos
from tests.support.faults import redis_restored

pytestmark = pytest.mark.e2e


def test_chaos_short_nobody_called_twice_nothing_stranded(
    pg_url: str, pg_sessions: sessionmaker[Session], redis_url: str, tmp_path: Path
) -> None:
    config = ChaosConfig(
        callbacks=300,
        workers=2,
        beats=2,
        fault_seconds=30,
        kill_every=5,
        db_kill_every=6,
        redis_restarts=1,
        concurrency=4,
        broker_url=redis_url,
        quiesce_timeout=120,
    )
    with redis_restored():
        report = run_chaos(config, pg_url, tmp_path)
    print("\n" + report.render())
    assert report.faults["worker SIGKILL"] >= 1
    assert report.faults["redis restart (queue lost)"] == 1
    assert report.faults["db terminate rounds"] >= 1
    assert report.answers["503"]
    assert report.answers["400"]
    assert report.duplicates == {}, "a person was called twice"
    assert report.stuck == [], "callbacks stranded"
    assert report.wrong_session == []
    assert report.dispatched_without_call == []
    assert report.failed_without_cause == []
    assert report.foreign_keys == []
    assert report.ok
