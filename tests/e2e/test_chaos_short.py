"""The chaos harness in its CI size: 2 beats, 2 workers, a few hundred callbacks, every
kind of fault (worker SIGKILLs, one Redis restart, database connections terminated, a
database server restart and a stop of some seconds, a provider that answers 503, 400 or
hangs after placing the call). Redis and the database server are the test's own
(tests/e2e/conftest.py). Full size: ``python -m tests.chaos``."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.chaos.harness import ChaosConfig, Servers, run_chaos
from tests.e2e.conftest import OwnDatabase
from tests.support.faults import PrivateRedis

pytestmark = pytest.mark.e2e


def test_chaos_short_nobody_called_twice_nothing_stranded(
    own_db: OwnDatabase,
    own_sessions: sessionmaker[Session],
    own_redis: PrivateRedis,
    tmp_path: Path,
) -> None:
    config = ChaosConfig(
        callbacks=300,
        workers=2,
        beats=2,
        fault_seconds=40,
        kill_every=5,
        db_kill_every=6,
        redis_restarts=1,
        db_restarts=1,
        db_stops=1,
        db_stop_seconds=12,
        concurrency=4,
        quiesce_timeout=120,
    )
    with own_redis.restored():
        report = run_chaos(config, own_db.url, tmp_path, Servers(own_redis, own_db.cluster))
    print("\n" + report.render())
    assert report.faults["worker SIGKILL"] >= 1
    assert report.faults["redis restart (queue lost)"] == 1
    assert report.faults["db terminate rounds"] >= 1
    assert report.faults["db server restart"] == 1
    assert report.faults["db server stopped 12s"] == 1
    assert report.answers["503"]
    assert report.answers["400"]
    assert report.duplicates == {}, "a person was called twice"
    assert report.stuck == [], "callbacks stranded"
    assert report.wrong_session == []
    assert report.dispatched_without_call == []
    assert report.failed_without_cause == []
    assert report.foreign_keys == []
    assert report.ok
