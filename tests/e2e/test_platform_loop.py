"""Issue 14 end to end with real processes (API, worker, beat, PostgreSQL, Redis, the
provider stand-in): a signed ``call.report`` (delivered twice, plus a forged copy)
becomes one callback, which is dialed; the callee does not answer: the pushed hangup
records ``no_answer`` and schedules one redial, which is dialed too; its own hangup push
is lost, so its outcome arrives by pull, and the chain stops at REDIAL_MAX=1."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.support.processes import free_port, pipeline_env, processes, wait_until
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
        wait_until(lambda: _ready(http), timeout=60, what="the api")

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


def _ready(http: httpx.Client) -> bool:
    try:
        return http.get("/readyz").status_code == 200
    except httpx.TransportError:
        return False
