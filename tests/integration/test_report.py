"""`callbacks status` and `callbacks history`: what an operator sees."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from freezegun import freeze_time
from sqlalchemy.orm import Session, sessionmaker

from tests.support.factories import T0, make_callback
from worker.cli.main import main
from worker.db.engine import make_engine, make_sessions
from worker.pacing.holds import PROVIDER, set_hold
from worker.report import cause_class, status_report
from worker.status import Status


def test_cause_classes_group_like_failures() -> None:
    assert cause_class("provider refused the call: HTTP 404 NOT_FOUND (attempt 1)") == (
        "provider refused the call"
    )
    assert cause_class("gave up after 5 attempts (#1: HTTP 503; ...)") == "gave up after N attempts"
    assert cause_class("expired") == "expired"
    assert cause_class(None) == "unknown"


def test_status_report_counts_backlog_failures_and_hold(sessions: sessionmaker[Session]) -> None:
    now = T0 + timedelta(minutes=10)
    with sessions.begin() as s:
        make_callback(s, scheduled_at=T0)  # due for 10 minutes
        make_callback(s, scheduled_at=T0 + timedelta(minutes=5))
        make_callback(s, scheduled_at=T0 + timedelta(hours=1))  # not due
        make_callback(s, Status.DISPATCHED)
        make_callback(s, Status.FAILED, failure_cause="expired", updated_at=now)
        make_callback(s, Status.FAILED, failure_cause="expired", updated_at=now)
        make_callback(
            s, Status.FAILED, failure_cause="expired", updated_at=now - timedelta(hours=2)
        )
        set_hold(s, PROVIDER, until=now + timedelta(minutes=1), reason="HTTP 401", now=now)
    with sessions() as s:
        report = status_report(s, now)
    assert report["counts"] == {
        "scheduled": 3,
        "dispatching": 0,
        "dispatched": 1,
        "cancelled": 0,
        "failed": 3,
    }
    assert report["due_backlog"] == 2
    assert report["oldest_due_age_seconds"] == 600
    assert report["failed_last_hour_by_cause"] == {"expired": 2}
    assert report["held"]["reason"] == "HTTP 401"


def test_cli_status_and_history(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    engine = make_engine(sqlite_url)
    with make_sessions(engine).begin() as s:
        cid = make_callback(s, Status.DISPATCHED).id
    engine.dispose()
    with freeze_time(T0):
        assert main(["status", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["counts"]["dispatched"] == 1
    assert report["held"] is None
    assert main(["history", cid, "--json"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["to"] for e in events] == ["scheduled"]
    assert events[0]["actor"] == "test"
    assert main(["history", "cb_missing"]) == 1
    assert "no callback cb_missing" in capsys.readouterr().err
