"""Issue 14 end to end with real processes (API, worker, beat, PostgreSQL, Redis, the
provider stand-in): a signed ``call.report`` (delivered twice, plus a forged copy)
becomes one callback, which is dialed; the callee does not answer: the pushed hangup
records ``no_answer`` and schedules one redial, which is dialed too; its own hangup push
is lost, so its outcome arrives by pull, and the chain stops at REDIAL_MAX=1."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.support.processes import api_ready, free_port, pipeline_env, processes, wait_until
from tests.support.provider import Provider
from tests.support.webhooks_in import event, new_secret, signed
from worker.db.models import Callback

pytestmark = pytest.mark.e2e
TO = "+12015550142"


def all_callbacks(sessions: sessionmaker[Session]) -> list[Callback]:
    with sessions() as s:
        return list(s.scalars(select(Callback).order_by(Callback.created_at)))


def test_report_to_callback_to_outcome_to_one_redial(
    pg_url: str,
    pg_sessions: sessionmaker[Session],
    redis_url: str,
    provider: Provider,
    tmp_path: Path,
) -> None:
    secret = new_secret()
    port = free_port()
    env = pipeline_env(
        pg_url,
        redis_url,
        provider,
        tmp_path,
        PORT=str(port),
        SPEKO_WEBHOOK_SECRET=secret,
        REDIAL_MAX="1",
        REDIAL_ON="no_answer,busy",
        REDIAL_INTERVALS="1s",
        OUTCOME_PULL_AFTER="3",
        POLL_INTERVAL="0.5",
    )
    provider.call_behaviours[TO] = "no_answer"
    base = f"http://127.0.0.1:{port}"
    with processes(tmp_path, env) as procs, httpx.Client(base_url=base, timeout=10) as http:
        procs.start("api", "callbacks", "api")
        procs.start("worker", "celery", "-A", "worker", "worker", "-c", "2")
        procs.start("beat", "celery", "-A", "worker", "beat")
        wait_until(lambda: api_ready(http), timeout=60, what="the api")

        at = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
        report = event(
            "call.report",
            {
                "session_id": "sess_src",
                "organization_id": "org_loop",
                "scheduled_callback": {"to_number": TO, "scheduled_at": at, "reason": "r"},
            },
        )
        raw, headers = signed(secret, report, webhook_id="msg_report")
        for _ in range(2):
            assert http.post("/webhooks/speko", content=raw, headers=headers).status_code == 200
        forged = headers | {
            "webhook-signature": signed(new_secret(), report)[1]["webhook-signature"]
        }
        assert http.post("/webhooks/speko", content=raw, headers=forged).status_code == 401

        wait_until(
            lambda: any(c.created_session_id for c in all_callbacks(pg_sessions)),
            timeout=60,
            what="the callback from the report to be dialed",
        )
        (first,) = all_callbacks(pg_sessions)
        assert first.source_session_id == "sess_src"
        hangup = event(
            "call.hangup",
            {"call_id": first.created_session_id, "organization_id": "org_loop",
             "sip_status_code": 480},
        )  # fmt: skip
        raw, headers = signed(secret, hangup)
        pushed = time.monotonic()
        assert http.post("/webhooks/speko", content=raw, headers=headers).status_code == 200
        wait_until(lambda: len(all_callbacks(pg_sessions)) == 2, timeout=60, what="the redial")
        to_redial = time.monotonic() - pushed
        # The redial's hangup push is "lost": its outcome comes by pull.
        wait_until(
            lambda: all(c.call_outcome for c in all_callbacks(pg_sessions)),
            timeout=90,
            what="the redial's outcome by pull",
        )
        # A redial is created in the transaction that records the outcome asking for it:
        # once every outcome is visible, every redial they could make is too.
        made = all_callbacks(pg_sessions)
    assert len(made) == 2, "REDIAL_MAX=1: never a second redial"
    first, redial = made
    assert (first.call_outcome, redial.call_outcome) == ("no_answer", "no_answer")
    assert redial.metadata_["redial_of"] == first.id
    assert redial.metadata_["redial_number"] == 1
    assert redial.created_session_id is not None
    print(f"hangup push -> redial stored: {to_redial:.2f} s")


BEHAVIOURS = ["no_answer"] * 3 + ["busy", "voicemail"] + ["answered"] * 5
"""Per number, by index mod 10: 30 % no answer, 10 % busy, 10 % voicemail, 50 % answered."""
SIP = {"no_answer": 480, "busy": 486, "answered": 200}


def _outcome_event(cb: Callback, behaviour: str) -> dict[str, object]:
    data: dict[str, object] = {
        "session_id": cb.created_session_id,
        "organization_id": cb.organization_id,
    }
    if behaviour == "voicemail":
        return event("call.report", data | {"voicemail": {"detected": True}})
    return event("call.hangup", data | {"call_id": cb.created_session_id,
                                        "sip_status_code": SIP[behaviour]})  # fmt: skip


def test_reports_twice_and_reordered_outcomes_pushed_or_pulled_redials_exact(
    pg_url: str,
    pg_sessions: sessionmaker[Session],
    redis_url: str,
    provider: Provider,
    tmp_path: Path,
) -> None:
    """N reports, each delivered twice in a shuffled order, become N callbacks; the
    stand-in's numbers do not answer, are busy, or reach voicemail; half of the outcome
    pushes are dropped (pulled instead); 2 redials on no_answer,busy: exactly 2 per such
    number, none for voicemail or answered, never a third."""
    n = 40
    secret = new_secret()
    port = free_port()
    env = pipeline_env(
        pg_url, redis_url, provider, tmp_path,
        PORT=str(port), SPEKO_WEBHOOK_SECRET=secret, REDIAL_MAX="2",
        REDIAL_ON="no_answer,busy", REDIAL_INTERVALS="1s", OUTCOME_PULL_AFTER="3",
        POLL_INTERVAL="0.5",
    )  # fmt: skip
    numbers = {f"+1201555{7000 + i:04d}": BEHAVIOURS[i % 10] for i in range(n)}
    provider.call_behaviours.update(numbers)
    rng = random.Random(14)
    at = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    deliveries = []
    for i, number in enumerate(numbers):
        body = event(
            "call.report",
            {"session_id": f"src_{i}", "organization_id": "org_loop",
             "scheduled_callback": {"to_number": number, "scheduled_at": at}},
        )  # fmt: skip
        deliveries += [signed(secret, body, webhook_id=f"report_{i}")] * 2
    rng.shuffle(deliveries)
    expected_per = {"no_answer": 3, "busy": 3, "voicemail": 1, "answered": 1}
    expected = sum(expected_per[b] for b in numbers.values())
    pushed_at: dict[str, float] = {}
    handled: set[str] = set()
    base = f"http://127.0.0.1:{port}"
    with processes(tmp_path, env) as procs, httpx.Client(base_url=base, timeout=10) as http:
        procs.start("api", "callbacks", "api")
        procs.start("worker", "celery", "-A", "worker", "worker", "-c", "4")
        procs.start("beat", "celery", "-A", "worker", "beat")
        wait_until(lambda: api_ready(http), timeout=60, what="the api")
        for raw, headers in deliveries:
            assert http.post("/webhooks/speko", content=raw, headers=headers).status_code == 200

        def settle() -> bool:
            rows = all_callbacks(pg_sessions)
            for cb in rows:
                if cb.created_session_id is None or cb.id in handled:
                    continue
                handled.add(cb.id)
                if len(handled) % 2:  # every other push is lost: the pull must find it
                    continue
                raw, headers = signed(secret, _outcome_event(cb, numbers[cb.to_number]))
                pushed_at[cb.id] = time.time()
                for _ in range(2):  # and each one that is sent is sent twice
                    assert (
                        http.post("/webhooks/speko", content=raw, headers=headers).status_code
                        == 200
                    )
            return len(rows) == expected and all(c.call_outcome for c in rows)

        wait_until(settle, timeout=300, what=f"{expected} callbacks, every outcome known")
        made = all_callbacks(pg_sessions)
    assert len(made) == expected
    per_number: dict[str, list[Callback]] = {}
    for cb in made:
        per_number.setdefault(cb.to_number, []).append(cb)
    for number, behaviour in numbers.items():
        chain = per_number[number]
        assert len(chain) == expected_per[behaviour], (number, behaviour)
        assert {c.call_outcome for c in chain} == {behaviour}
        assert sorted(c.metadata_.get("redial_number", 0) for c in chain) == list(range(len(chain)))
    keys = [r.headers.get("idempotency-key") for r in provider.requests if r.body is not None]
    assert len(keys) == len(set(keys)) == expected, "each callback dialed exactly once"
    delays = sorted(
        (r.created_at.timestamp() - pushed_at[r.metadata_["redial_of"]])
        for r in made
        if r.metadata_.get("redial_of") in pushed_at
    )
    if delays:
        print(
            f"{expected} callbacks; hangup push -> redial stored: median "
            f"{delays[len(delays) // 2]:.2f} s, max {delays[-1]:.2f} s over {len(delays)}"
        )
