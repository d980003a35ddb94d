"""The overview: counts, backlog, charts from the history, holds; scoped to the viewer."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.integration.api.conftest import NOW
from tests.integration.api.console.conftest import ConsoleKeys, sign_in
from tests.support.factories import make_callback
from worker.console.overview import overview
from worker.console.viewers import Viewer
from worker.db.models import CallbackEvent
from worker.pacing.holds import set_hold
from worker.status import Status


def _dial(s: Session, callback_id: str, at_minutes: int, lag_s: int) -> None:
    at = NOW - timedelta(minutes=at_minutes)
    s.add(
        CallbackEvent(
            callback_id=callback_id,
            at=at,
            from_status="dispatching",
            to_status="dispatching",
            actor="worker",
            detail={"event": "attempt started", "attempt": 1},
        )
    )
    s.add(
        CallbackEvent(
            callback_id=callback_id,
            at=at,
            from_status="dispatching",
            to_status="dispatched",
            actor="worker",
            detail={"attempt": 1},
        )
    )


def test_overview_counts_charts_and_holds(
    client: TestClient, console_keys: ConsoleKeys, pg_sessions: sessionmaker[Session]
) -> None:
    with pg_sessions.begin() as s:
        due = make_callback(s, org="org_a", scheduled_at=NOW - timedelta(minutes=2))
        placed = make_callback(
            s, Status.DISPATCHED, org="org_a", scheduled_at=NOW - timedelta(minutes=10)
        )
        make_callback(s, Status.FAILED, org="org_b", failure_cause="provider refused: HTTP 404")
        _dial(s, placed.id, 5, 300)
        set_hold(s, "org:org_b", until=NOW + timedelta(minutes=5), reason="429", now=NOW)
    with pg_sessions() as s:
        mine = overview(s, Viewer("k", "org_a"), NOW)
        every = overview(s, Viewer("k", None), NOW)
    assert mine.counts["scheduled"] == 1
    assert mine.counts["failed"] == 0
    assert every.counts["failed"] == 1
    assert mine.due_backlog == 1
    assert mine.oldest_due_age_seconds == 120
    busy = [m for m in mine.minutes if m.dials]
    assert len(busy) == 1
    assert busy[0].placed == 1
    assert busy[0].lag_avg == 300  # started 5 min ago, scheduled 10 min ago
    assert [h.scope for h in mine.holds] == []
    assert [h.scope for h in every.holds] == ["org:org_b"]
    assert every.failures_by_cause == {"provider refused": 1}
    sign_in(client, console_keys.a)
    page = client.get("/console")
    assert page.status_code == 200
    assert "<svg" in page.text
    assert 'id="backlog">1<' in page.text
    assert due.id  # listed by count, not by id
