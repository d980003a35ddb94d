"""Redials (issue 14): a new callback, in the outcome's own transaction, exactly one per
qualifying outcome whatever duplicates and push/pull races happen; a chain never exceeds
its max; answered (or an outcome not in the policy) ends it. Real PostgreSQL."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.support.factories import make_callback
from tests.support.provider import Provider
from worker.cli.main import main
from worker.db.models import Callback, WebhookEvent
from worker.dialer.calls import SpekoCalls
from worker.outcome_pull import PullPolicy, due_pulls, pull_one
from worker.pacing.orgs import upsert
from worker.platform_events.process import process
from worker.platform_events.store import store_event
from worker.redials import RedialPolicy
from worker.status import Status
from worker.webhooks.endpoints import create_endpoint

NOW = datetime(2026, 3, 2, 15, 20, tzinfo=UTC)
LATENESS = timedelta(hours=4)
POLICY = RedialPolicy(
    max=2, on=frozenset({"no_answer", "busy"}), intervals=(timedelta(minutes=30),)
)


class Clock:
    def __init__(self, at: datetime = NOW) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


def dispatched(sessions: sessionmaker[Session], session_id: str, **state: Any) -> Callback:
    with sessions.begin() as s:
        return make_callback(
            s,
            Status.DISPATCHED,
            created_session_id=session_id,
            dispatched_at=NOW - timedelta(minutes=15),
            from_number="+12015550000",
            agent_id="agent_1",
            instructions="Offer the quote",
            **({"metadata": {"lead": 7}} | state),
        )


def push(
    sessions: sessionmaker[Session], webhook_id: str, session_id: str, sip: int,
    at: datetime = NOW,
) -> None:  # fmt: skip
    body = {
        "type": "call.hangup",
        "timestamp": "t",
        "data": {"call_id": session_id, "organization_id": "org_a", "sip_status_code": sip},
    }
    with sessions.begin() as s:
        store_event(s, webhook_id, body, "call.hangup", now=at)
    process(sessions, Clock(at), webhook_id, lateness=LATENESS, redials=POLICY)


def redials_of(sessions: sessionmaker[Session], callback_id: str) -> list[Callback]:
    with sessions() as s:
        return [
            cb for cb in s.scalars(select(Callback)) if cb.metadata_.get("redial_of") == callback_id
        ]


def test_a_no_answer_gets_one_redial_shaped_from_the_original(
    pg_sessions: sessionmaker[Session],
) -> None:
    first = dispatched(pg_sessions, "call_1")
    push(pg_sessions, "h1", "call_1", 480)
    push(pg_sessions, "h1-again", "call_1", 480)
    push(pg_sessions, "h1-late", "call_1", 486)
    (redial,) = redials_of(pg_sessions, first.id)
    assert redial.status is Status.SCHEDULED
    assert redial.scheduled_at == NOW + timedelta(minutes=30)
    assert (redial.organization_id, redial.to_number, redial.from_number, redial.agent_id) == (
        first.organization_id,
        first.to_number,
        "+12015550000",
        "agent_1",
    )
    assert redial.metadata_ == {
        "lead": 7,
        "redial_of": first.id,
        "redial_number": 1,
        "previous_outcome": "no_answer",
    }
    assert redial.instructions is not None
    assert "attempt 2" in redial.instructions
    assert "no answer" in redial.instructions
    assert redial.instructions.endswith("Offer the quote")


@pytest.mark.parametrize(("sip", "outcome"), [(200, "answered"), (404, "failed")])
def test_answered_or_an_outcome_outside_the_policy_gets_none(
    sip: int, outcome: str, pg_sessions: sessionmaker[Session]
) -> None:
    first = dispatched(pg_sessions, "call_1")
    push(pg_sessions, "h1", "call_1", sip)
    with pg_sessions() as s:
        cb = s.get(Callback, first.id)
        assert cb is not None
        assert cb.call_outcome == outcome
    assert redials_of(pg_sessions, first.id) == []


def test_a_chain_never_exceeds_its_max(pg_sessions: sessionmaker[Session]) -> None:
    first = dispatched(pg_sessions, "call_0")
    push(pg_sessions, "h0", "call_0", 486)
    assert len(redials_of(pg_sessions, first.id)) == 1
    # The second redial (redial_number 2) not answered either: no third.
    second_call = dispatched(
        pg_sessions, "call_x", metadata={"redial_of": first.id, "redial_number": 2}
    )
    push(pg_sessions, "hx", "call_x", 480)
    assert redials_of(pg_sessions, second_call.id) == [], "a third would exceed max=2"
    mid = dispatched(pg_sessions, "call_m", metadata={"redial_number": 1})
    push(pg_sessions, "hm", "call_m", 480)
    (two,) = redials_of(pg_sessions, mid.id)
    assert two.metadata_["redial_number"] == 2


def test_a_push_and_a_pull_racing_make_exactly_one_redial(
    pg_sessions: sessionmaker[Session], provider: Provider
) -> None:
    count = 12
    firsts = []
    for n in range(count):
        number = f"+120155560{n:02d}"
        provider.add_call(f"call_{n}", number)
        provider.call_behaviours[number] = "no_answer"
        firsts.append(dispatched(pg_sessions, f"call_{n}", to=number).id)
    pull_policy = PullPolicy(
        timedelta(seconds=600), timedelta(hours=24), redials=POLICY, lateness=LATENESS
    )
    with pg_sessions.begin() as s:
        pending = {p.session_id: p for p in due_pulls(s, now=NOW, policy=pull_policy, limit=100)}
    reader = SpekoCalls(provider.url, provider.api_key, connect_timeout=2, read_timeout=5)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def pusher() -> None:
        try:
            for n in range(count):
                barrier.wait(timeout=60)
                push(pg_sessions, f"push_{n}", f"call_{n}", 480)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def puller() -> None:
        try:
            for n in range(count):
                barrier.wait(timeout=60)
                pull_one(pg_sessions, Clock(), reader.read, pending[f"call_{n}"], pull_policy)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=pusher), threading.Thread(target=puller)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reader.close()
    assert errors == []
    for callback_id in firsts:
        assert len(redials_of(pg_sessions, callback_id)) == 1


def test_org_redial_set_and_show(
    pg_url: str, pg_sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setenv("DATABASE_URL", pg_url)
    assert main(["org-redial", "show", "--org", "org_r"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "organization_id": "org_r",
        "max": 0,
        "on": ["busy", "no_answer"],
        "intervals": "30m,2h",
    }
    assert main(["org-redial", "set", "--org", "org_r", "--max", "2", "--on",
                 "no_answer,voicemail", "--intervals", "10m,1h"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out) == {
        "organization_id": "org_r",
        "max": 2,
        "on": ["no_answer", "voicemail"],
        "intervals": "10m,1h",
    }
    assert main(["org-redial", "set", "--org", "org_r", "--on", "answered"]) == 2
    assert "must be among" in capsys.readouterr().err


def test_an_organizations_own_policy_overrides_the_defaults(
    pg_sessions: sessionmaker[Session],
) -> None:
    with pg_sessions.begin() as s:
        upsert(s, "org_a", now=NOW, redial_max=1, redial_on="voicemail", redial_intervals="5m")
    first = dispatched(pg_sessions, "call_v")
    body = {
        "type": "call.report",
        "timestamp": "t",
        "data": {"session_id": "call_v", "organization_id": "org_a",
                 "voicemail": {"detected": True}},
    }  # fmt: skip
    with pg_sessions.begin() as s:
        store_event(s, "rep", body, "call.report", now=NOW)
    process(pg_sessions, Clock(), "rep", lateness=LATENESS, redials=POLICY)
    (redial,) = redials_of(pg_sessions, first.id)
    assert redial.scheduled_at == NOW + timedelta(minutes=5)


def test_the_outcome_and_its_redial_are_told_to_the_customer_once(
    pg_sessions: sessionmaker[Session],
) -> None:
    """``callback.outcome`` and ``callback.redial_scheduled`` (issue 15) are written with the
    outcome and the redial they report, once however often the hangup is pushed."""
    first = dispatched(pg_sessions, "call_1")
    with pg_sessions.begin() as s:
        create_endpoint(
            s,
            organization_id=first.organization_id,
            url="http://127.0.0.1:9/hook",
            events=[],
            now=NOW - timedelta(days=1),
        )
    push(pg_sessions, "h1", "call_1", 480)
    push(pg_sessions, "h1-again", "call_1", 480)
    (redial,) = redials_of(pg_sessions, first.id)
    with pg_sessions() as s:
        told = s.execute(
            select(WebhookEvent.callback_id, WebhookEvent.type).order_by(WebhookEvent.sequence)
        ).all()
    assert [t for cid, t in told if cid == first.id] == [
        "callback.outcome",
        "callback.redial_scheduled",
    ]
    assert [t for cid, t in told if cid == redial.id] == ["callback.scheduled"]
    with pg_sessions() as s:
        (event,) = s.scalars(
            select(WebhookEvent).where(WebhookEvent.type == "callback.redial_scheduled")
        )
        assert event.payload["data"]["detail"]["redial_id"] == redial.id
