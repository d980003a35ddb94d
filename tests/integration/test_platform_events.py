"""Processing stored platform events: callbacks from call analysis (one per source
session, also when reports race), invalid ones recorded, the sweep's recovery of events
whose task was lost. Real PostgreSQL (and SQLite where marked)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.support.factories import make_callback
from worker.db.models import Callback, CallbackEvent, PlatformEvent
from worker.platform_events.process import SWEEP_GRACE, Result, process, session_key, sweep
from worker.platform_events.store import store_event
from worker.report import render, status_report
from worker.status import Status

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
LATENESS = timedelta(hours=4)


class Clock:
    def __init__(self, at: datetime = NOW) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


def report(session_id: str = "sess_1", org: str = "org_a", **asked: Any) -> dict[str, Any]:
    scheduled = {
        "to_number": "+12015551234",
        "scheduled_at": "2026-03-02T15:00:00Z",
        "reason": "asked to be called back",
        "instructions": "Be brief",
        "summary": "wants a quote",
        "agent_id": "agent_1",
        "phone_number_id": "pn_1",
        "from_number": "+12015550000",
        "pipeline_config": {"voice": "v1"},
        "metadata": {"lead": 7},
        "unknown_future_field": "ignored",
    } | asked
    return {
        "type": "call.report",
        "timestamp": "2026-03-02T12:00:00Z",
        "data": {"session_id": session_id, "organization_id": org, "scheduled_callback": scheduled},
    }


def deliver(
    sessions: sessionmaker[Session], webhook_id: str, body: dict[str, Any], at: datetime = NOW
) -> None:
    with sessions.begin() as s:
        store_event(s, webhook_id, body, body["type"], now=at)


def callbacks(sessions: sessionmaker[Session]) -> list[Callback]:
    with sessions() as s:
        return list(s.scalars(select(Callback)))


def event_row(sessions: sessionmaker[Session], webhook_id: str) -> PlatformEvent:
    with sessions() as s:
        row = s.scalar(select(PlatformEvent).where(PlatformEvent.webhook_id == webhook_id))
        assert row is not None
        return row


def test_a_report_with_a_scheduled_callback_creates_it_in_api_field_names(
    sessions: sessionmaker[Session],
) -> None:
    deliver(sessions, "m1", report())
    handled = process(sessions, Clock(), "m1", lateness=LATENESS)
    assert handled is not None
    assert handled.result is Result.CALLBACK_CREATED
    (cb,) = callbacks(sessions)
    assert (cb.organization_id, cb.source_session_id) == ("org_a", "sess_1")
    assert (cb.to_number, cb.from_number) == ("+12015551234", "+12015550000")
    assert cb.scheduled_at == datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
    assert (cb.reason, cb.instructions, cb.summary) == (
        "asked to be called back",
        "Be brief",
        "wants a quote",
    )
    assert (cb.agent_id, cb.phone_number_id) == ("agent_1", "pn_1")
    assert cb.pipeline_config == {"voice": "v1"}
    assert cb.metadata_ == {"lead": 7}
    assert cb.creation_key == session_key("sess_1")
    row = event_row(sessions, "m1")
    assert (row.result, row.callback_id, row.processed_at) == ("callback_created", cb.id, NOW)


def test_processing_an_event_twice_has_one_effect(sessions: sessionmaker[Session]) -> None:
    deliver(sessions, "m1", report())
    assert process(sessions, Clock(), "m1", lateness=LATENESS) is not None
    assert process(sessions, Clock(), "m1", lateness=LATENESS) is None
    assert len(callbacks(sessions)) == 1


def test_every_report_of_one_session_makes_one_callback(sessions: sessionmaker[Session]) -> None:
    deliver(sessions, "report", report())
    analysis = report(reason="a different wording")
    analysis["type"] = "call.analysis"
    deliver(sessions, "analysis", analysis)
    deliver(sessions, "report-again", report())
    results = [
        process(sessions, Clock(), m, lateness=LATENESS)
        for m in ("report", "analysis", "report-again")
    ]
    assert [h.result if h else None for h in results] == [
        Result.CALLBACK_CREATED,
        Result.CALLBACK_EXISTS,
        Result.CALLBACK_EXISTS,
    ]
    (cb,) = callbacks(sessions)
    assert {h.callback_id for h in results if h} == {cb.id}


def test_racing_reports_of_one_session_make_one_callback(
    pg_sessions: sessionmaker[Session],
) -> None:
    sessions_count = 15
    for n in range(sessions_count):
        deliver(pg_sessions, f"a{n}", report(f"sess_{n}"))
        deliver(pg_sessions, f"b{n}", report(f"sess_{n}"))
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(prefix: str) -> None:
        try:
            for n in range(sessions_count):
                barrier.wait(timeout=60)
                process(pg_sessions, Clock(), f"{prefix}{n}", lateness=LATENESS)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(p,)) for p in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    made = callbacks(pg_sessions)
    assert len(made) == sessions_count
    assert sorted(str(c.source_session_id) for c in made) == sorted(
        f"sess_{n}" for n in range(sessions_count)
    )
    with pg_sessions() as s:
        assert s.scalar(select(func.count()).where(PlatformEvent.processed_at.is_(None))) == 0
        results = list(s.scalars(select(PlatformEvent.result)))
    assert results.count("callback_created") == sessions_count
    assert results.count("callback_exists") == sessions_count


@pytest.mark.parametrize(
    ("asked", "why"),
    [
        ({"to_number": "12345"}, "to_number"),
        ({"scheduled_at": "2026-03-02T15:00:00"}, "scheduled_at"),
        ({"scheduled_at": "2026-03-01T00:00:00Z"}, "lateness"),
        ({"metadata": {"timezone": "Mars/Olympus"}}, "IANA time zone"),
    ],
)
def test_an_invalid_scheduled_callback_creates_nothing_and_says_why(
    asked: dict[str, Any], why: str, sessions: sessionmaker[Session]
) -> None:
    before = (
        REGISTRY.get_sample_value(
            "callbacks_platform_events_total", {"type": "call.report", "result": "invalid_callback"}
        )
        or 0.0
    )
    deliver(sessions, "bad", report(**asked))
    handled = process(sessions, Clock(), "bad", lateness=LATENESS)
    assert handled is not None
    assert handled.result is Result.INVALID_CALLBACK
    assert callbacks(sessions) == []
    row = event_row(sessions, "bad")
    assert row.result == "invalid_callback"
    assert why in (row.error or "")
    after = REGISTRY.get_sample_value(
        "callbacks_platform_events_total", {"type": "call.report", "result": "invalid_callback"}
    )
    assert after == before + 1
    with sessions() as s:
        text = render(status_report(s, NOW))
    assert "platform events refused in the last hour: 1" in text
    assert why in text


def test_a_report_without_a_scheduled_callback_and_unknown_types_are_ignored(
    sessions: sessionmaker[Session],
) -> None:
    plain = report()
    plain["data"]["scheduled_callback"] = None
    deliver(sessions, "plain", plain)
    deliver(sessions, "sms", {"type": "sms.received", "timestamp": "t", "data": {}})
    for m in ("plain", "sms"):
        handled = process(sessions, Clock(), m, lateness=LATENESS)
        assert handled is not None
        assert handled.result is Result.IGNORED
    assert callbacks(sessions) == []


def test_the_sweep_processes_events_whose_task_was_lost(sessions: sessionmaker[Session]) -> None:
    deliver(sessions, "old", report("sess_old"), at=NOW - SWEEP_GRACE - timedelta(seconds=1))
    deliver(sessions, "fresh", report("sess_fresh"), at=NOW)
    assert sweep(sessions, Clock(), lateness=LATENESS) == 1
    assert [c.source_session_id for c in callbacks(sessions)] == ["sess_old"]
    assert event_row(sessions, "fresh").processed_at is None
    assert sweep(sessions, Clock(NOW + SWEEP_GRACE), lateness=LATENESS) == 1
    assert sweep(sessions, Clock(NOW + SWEEP_GRACE), lateness=LATENESS) == 0
    assert len(callbacks(sessions)) == 2


# --- the outcome of calls we placed (pushed events) -----------------------------------


def dispatched(sessions: sessionmaker[Session], session_id: str, org: str = "org_a") -> str:
    with sessions.begin() as s:
        cb = make_callback(
            s, Status.DISPATCHED, org=org, created_session_id=session_id, dispatched_at=NOW
        )
        return cb.id


def outcome_of(sessions: sessionmaker[Session], callback_id: str) -> tuple[str | None, Any]:
    with sessions() as s:
        cb = s.get(Callback, callback_id)
        assert cb is not None
        return cb.call_outcome, cb.call_outcome_at


def hangup(call_id: str, sip: int, org: str = "org_a") -> dict[str, Any]:
    return {
        "type": "call.hangup",
        "timestamp": "t",
        "data": {"call_id": call_id, "organization_id": org, "sip_status_code": sip},
    }


def test_a_pushed_hangup_records_the_outcome_once_first_decisive_wins(
    sessions: sessionmaker[Session],
) -> None:
    cb_id = dispatched(sessions, "call_1")
    deliver(
        sessions,
        "ring",
        {
            "type": "call.ringing",
            "timestamp": "t",
            "data": {"call_id": "call_1", "organization_id": "org_a"},
        },
    )
    deliver(sessions, "busy", hangup("call_1", 486))
    deliver(sessions, "late", hangup("call_1", 480))
    got = [
        process(sessions, Clock(NOW + timedelta(seconds=i)), m, lateness=LATENESS)
        for i, m in enumerate(("ring", "busy", "late"))
    ]
    assert [h.result if h else None for h in got] == [
        Result.OUTCOME_UNDECIDED,
        Result.OUTCOME_RECORDED,
        Result.OUTCOME_KNOWN,
    ]
    assert outcome_of(sessions, cb_id) == ("busy", NOW + timedelta(seconds=1))
    with sessions() as s:
        history = list(s.scalars(select(CallbackEvent).where(CallbackEvent.callback_id == cb_id)))
    outcome_events = [e for e in history if e.detail.get("event") == "call outcome"]
    assert len(outcome_events) == 1
    assert outcome_events[0].detail["call_outcome"] == "busy"
    with sessions() as s:
        report = status_report(s, NOW + timedelta(minutes=30))
    assert report["call_outcomes_last_hour"] == {"busy": 1}
    assert "call outcomes in the last hour: busy: 1" in render(report)
    assert (outcome_events[0].from_status, outcome_events[0].to_status) == ("dispatched",) * 2


def test_an_event_of_another_organization_never_touches_our_callback(
    sessions: sessionmaker[Session],
) -> None:
    cb_id = dispatched(sessions, "call_1", org="org_a")
    deliver(sessions, "other-org", hangup("call_1", 486, org="org_b"))
    no_org = hangup("call_1", 486)
    del no_org["data"]["organization_id"]
    deliver(sessions, "no-org", no_org)
    deliver(sessions, "stranger", hangup("call_unknown", 486))
    for m in ("other-org", "no-org", "stranger"):
        handled = process(sessions, Clock(), m, lateness=LATENESS)
        assert handled is not None
        assert handled.result is Result.IGNORED
    assert outcome_of(sessions, cb_id) == (None, None)


def test_a_report_by_session_id_with_voicemail_records_voicemail(
    sessions: sessionmaker[Session],
) -> None:
    cb_id = dispatched(sessions, "sess_ours")
    body = {
        "type": "call.report",
        "timestamp": "t",
        "data": {
            "session_id": "sess_ours",
            "organization_id": "org_a",
            "voicemail": {"detected": True},
            "scheduled_callback": None,
        },
    }
    deliver(sessions, "rep", body)
    handled = process(sessions, Clock(), "rep", lateness=LATENESS)
    assert handled is not None
    assert handled.result is Result.OUTCOME_RECORDED
    assert outcome_of(sessions, cb_id)[0] == "voicemail"
