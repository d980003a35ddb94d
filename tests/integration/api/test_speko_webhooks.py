"""``POST /webhooks/speko``: verified over the raw body, stored before the 2xx, once per
``webhook-id``; processing is a task sent after the commit (read back from Redis)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from celery import Celery
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.integration.api.conftest import NOW, FixedClock, Keys, bearer
from tests.support.broker import queued_dispatches
from tests.support.factories import make_callback
from tests.support.webhooks_in import event, new_secret
from tests.support.webhooks_in import signed as signed_at
from worker import lifecycle
from worker.api.app import create_app
from worker.db.models import Callback, PlatformEvent
from worker.serializer import callback_view
from worker.settings import ConfigurationError, Settings, load_settings
from worker.status import Status


def signed(secret: str, body: bytes | dict[str, Any], **kw: Any) -> tuple[bytes, dict[str, str]]:
    """Signed at the API's frozen ``NOW`` (its clock, months away from the wall clock)."""
    return signed_at(secret, body, at=NOW, **kw)


SECRET = new_secret()
OLD_SECRET = new_secret()
REPORT = event("call.report", {"session_id": "sess_1", "organization_id": "org_a"})


@pytest.fixture
def hook_client(
    api_settings: Settings,
    pg_sessions: sessionmaker[Session],
    celery_app: Celery,
    clock: FixedClock,
) -> Iterator[TestClient]:
    settings = api_settings.model_copy(update={"speko_webhook_secret": f"{OLD_SECRET} {SECRET}"})
    app = create_app(settings, sessions=pg_sessions, celery=celery_app, clock=clock)
    with TestClient(app) as c:
        yield c


def stored(sessions: sessionmaker[Session]) -> list[PlatformEvent]:
    with sessions() as s:
        return list(s.scalars(select(PlatformEvent).order_by(PlatformEvent.id)))


def sent_tasks(redis_url: str) -> list[tuple[str, list[object]]]:
    return [m for m in queued_dispatches(redis_url) if m[0] == "callbacks.process_platform_event"]


def test_a_signed_event_is_stored_acknowledged_then_its_task_sent(
    hook_client: TestClient, pg_sessions: sessionmaker[Session], api_redis_url: str
) -> None:
    raw, headers = signed(SECRET, REPORT, webhook_id="msg_1")
    r = hook_client.post("/webhooks/speko", content=raw, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json() == {"received": True, "duplicate": False}
    (row,) = stored(pg_sessions)
    assert (row.webhook_id, row.type, row.processed_at) == ("msg_1", "call.report", None)
    assert row.payload["data"] == REPORT["data"]
    assert sent_tasks(api_redis_url) == [("callbacks.process_platform_event", ["msg_1"])]


def test_the_same_webhook_id_again_is_acknowledged_and_changes_nothing(
    hook_client: TestClient, pg_sessions: sessionmaker[Session], api_redis_url: str
) -> None:
    raw, headers = signed(SECRET, REPORT, webhook_id="msg_dup")
    first = hook_client.post("/webhooks/speko", content=raw, headers=headers)
    again = hook_client.post("/webhooks/speko", content=raw, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.json()["duplicate"] is True
    assert len(stored(pg_sessions)) == 1
    assert len(sent_tasks(api_redis_url)) == 1


def test_either_rotated_secret_verifies(
    hook_client: TestClient, pg_sessions: sessionmaker[Session]
) -> None:
    for secret in (OLD_SECRET, SECRET):
        raw, headers = signed(secret, REPORT)
        assert hook_client.post("/webhooks/speko", content=raw, headers=headers).status_code == 200
    assert len(stored(pg_sessions)) == 2


def _tampered(raw: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    return raw.replace(b"sess_1", b"sess_2"), headers


def _no_signature(raw: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    return raw, {k: v for k, v in headers.items() if k != "webhook-signature"}


def _no_id(raw: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    return raw, {k: v for k, v in headers.items() if k != "webhook-id"}


def _garbled(raw: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    return raw, headers | {"webhook-signature": "v1"}


def _other_id(raw: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    # A replay of a genuine body and signature under a new id.
    return raw, headers | {"webhook-id": "msg_replayed"}


@pytest.mark.parametrize("forge", [_tampered, _no_signature, _no_id, _garbled, _other_id])
def test_a_forged_delivery_is_401_and_stores_nothing(
    forge: object, hook_client: TestClient, pg_sessions: sessionmaker[Session]
) -> None:
    raw, headers = forge(*signed(SECRET, REPORT))  # type: ignore[operator]
    r = hook_client.post("/webhooks/speko", content=raw, headers=headers)
    assert r.status_code == 401
    assert r.json() == {"error": "Missing or invalid webhook signature", "code": "UNAUTHORIZED"}
    assert stored(pg_sessions) == []


def test_a_wrong_secret_is_401(hook_client: TestClient, pg_sessions: sessionmaker[Session]) -> None:
    raw, headers = signed(new_secret(), REPORT)
    assert hook_client.post("/webhooks/speko", content=raw, headers=headers).status_code == 401
    assert stored(pg_sessions) == []


@pytest.mark.parametrize("skew", [timedelta(minutes=-6), timedelta(minutes=6)])
def test_a_timestamp_more_than_five_minutes_off_is_401(
    skew: timedelta, hook_client: TestClient, pg_sessions: sessionmaker[Session]
) -> None:
    raw, headers = signed(SECRET, REPORT, skew=skew)
    assert hook_client.post("/webhooks/speko", content=raw, headers=headers).status_code == 401
    assert stored(pg_sessions) == []


def test_a_timestamp_four_minutes_off_is_accepted(hook_client: TestClient) -> None:
    raw, headers = signed(SECRET, REPORT, skew=timedelta(minutes=-4))
    assert hook_client.post("/webhooks/speko", content=raw, headers=headers).status_code == 200


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"[1, 2]", "JSON object"),
        (b"{not json", "malformed JSON"),
        (json.dumps({"type": "call.report", "timestamp": "t"}).encode(), "data"),
        (json.dumps({"type": "", "timestamp": "t", "data": {}}).encode(), "type"),
        (json.dumps({"type": "call.report", "timestamp": "t", "data": []}).encode(), "data"),
        (json.dumps(event("call.report", {"s": "a\u0000b"})).encode(), "NUL"),
        (b'{"type":"x","timestamp":"t","data":' + b"[" * 40 + b"]" * 40 + b"}", "nested"),
    ],
)
def test_a_signed_body_that_is_not_an_event_is_400(
    body: bytes, says: str, hook_client: TestClient, pg_sessions: sessionmaker[Session]
) -> None:
    raw, headers = signed(SECRET, body)
    r = hook_client.post("/webhooks/speko", content=raw, headers=headers)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "VALIDATION_ERROR"
    assert says in r.json()["error"]
    assert stored(pg_sessions) == []


def _report_of(size: int) -> dict[str, Any]:
    """A call.report the size of a long call: transcript entries as the spec shapes them."""
    line = {"role": "user", "text": "I would like a call back about my order. " * 4}
    per_entry = len(json.dumps(line)) + 2
    entries = [line] * (size // per_entry)
    data = {
        "session_id": "sess_big",
        "organization_id": "org_a",
        "transcript": {"entries": entries},
    }
    return event("call.report", data)


def test_a_report_of_a_megabyte_and_a_half_is_stored(
    hook_client: TestClient, pg_sessions: sessionmaker[Session]
) -> None:
    # Over the other routes' 64 KB: a transcript-carrying report has its own, larger limit.
    raw, headers = signed(SECRET, _report_of(1_500_000), webhook_id="msg_big")
    assert 1_400_000 < len(raw) < Settings().speko_webhook_max_body
    r = hook_client.post("/webhooks/speko", content=raw, headers=headers)
    assert r.status_code == 200, r.text
    (row,) = stored(pg_sessions)
    assert row.payload["data"]["transcript"] == _report_of(1_500_000)["data"]["transcript"]


def _in_chunks(raw: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for start in range(0, len(raw), size):
        yield raw[start : start + size]


@pytest.mark.parametrize("declared", [True, False])
def test_a_body_over_the_receivers_limit_is_413_before_verification(
    declared: bool,
    api_settings: Settings,
    pg_sessions: sessionmaker[Session],
    celery_app: Celery,
    clock: FixedClock,
) -> None:
    limit = 256 * 1024
    settings = api_settings.model_copy(
        update={"speko_webhook_secret": SECRET, "speko_webhook_max_body": limit}
    )
    app = create_app(settings, sessions=pg_sessions, celery=celery_app, clock=clock)
    fits, fits_headers = signed(SECRET, _report_of(limit - 1024))
    over, over_headers = signed(SECRET, _report_of(limit + 1024))
    with TestClient(app) as c:
        assert c.post("/webhooks/speko", content=fits, headers=fits_headers).status_code == 200
        # Without a Content-Length (chunked), the edge stops reading once past the limit.
        content: Any = over if declared else _in_chunks(over)
        r = c.post("/webhooks/speko", content=content, headers=over_headers)
    assert r.status_code == 413
    assert r.json() == {
        "error": f"Request body too large: at most {limit} bytes",
        "code": "PAYLOAD_TOO_LARGE",
    }
    assert len(stored(pg_sessions)) == 1


def test_a_delivery_signed_by_the_wall_clock_is_401_when_the_api_clock_disagrees(
    hook_client: TestClient, pg_sessions: sessionmaker[Session]
) -> None:
    # The window is the API's injected clock's (frozen at NOW, months before today).
    raw, headers = signed_at(SECRET, REPORT, at=datetime.now(UTC))
    assert hook_client.post("/webhooks/speko", content=raw, headers=headers).status_code == 401
    assert stored(pg_sessions) == []


def test_an_unknown_type_is_stored_and_acknowledged(
    hook_client: TestClient, pg_sessions: sessionmaker[Session]
) -> None:
    raw, headers = signed(SECRET, event("sms.received", {"x": 1}, extra_field=True))
    assert hook_client.post("/webhooks/speko", content=raw, headers=headers).status_code == 200
    (row,) = stored(pg_sessions)
    assert row.type == "sms.received"
    assert row.payload["extra_field"] is True


def test_a_broker_down_after_the_commit_still_acknowledges_and_keeps_the_event(
    api_settings: Settings,
    pg_sessions: sessionmaker[Session],
    celery_app: Celery,
    clock: FixedClock,
) -> None:
    def broker_down(_: str) -> None:
        raise ConnectionError("broker unreachable")

    settings = api_settings.model_copy(update={"speko_webhook_secret": SECRET})
    app = create_app(
        settings, sessions=pg_sessions, celery=celery_app, send_event=broker_down, clock=clock
    )
    raw, headers = signed(SECRET, REPORT, webhook_id="msg_lost_task")
    with TestClient(app) as c:
        assert c.post("/webhooks/speko", content=raw, headers=headers).status_code == 200
    (row,) = stored(pg_sessions)
    assert row.processed_at is None  # the sweep's work (tests/integration/test_platform_events.py)


def test_without_a_secret_the_receiver_answers_503_so_the_platform_retries(
    client: TestClient, pg_sessions: sessionmaker[Session]
) -> None:
    raw, headers = signed(SECRET, REPORT)
    r = client.post("/webhooks/speko", content=raw, headers=headers)
    assert r.status_code == 503
    assert r.json()["code"] == "SERVICE_UNAVAILABLE"
    with pg_sessions() as s:
        assert s.scalar(select(func.count()).select_from(PlatformEvent)) == 0


@pytest.mark.parametrize("value", ["sekrit", "whsec_", "whsec_!!!! whsec_abc"])
def test_a_malformed_secret_stops_start_up_naming_the_variable(value: str) -> None:
    with pytest.raises(ConfigurationError, match="SPEKO_WEBHOOK_SECRET"):
        load_settings(speko_webhook_secret=value)


def test_the_callback_object_serves_its_call_outcome(
    client: TestClient, keys: Keys, pg_sessions: sessionmaker[Session]
) -> None:
    with pg_sessions.begin() as s:
        cb = make_callback(s, Status.DISPATCHED, created_session_id="sess_o")
        lifecycle.record_call_outcome(s, cb.id, "no_answer", now=NOW, actor="t", detail={})
    got = client.get(f"/v1/callbacks/{cb.id}", headers=bearer(keys.a)).json()
    assert (got["call_outcome"], got["call_outcome_at"]) == ("no_answer", "2026-03-02T12:00:00Z")
    with pg_sessions() as s:
        row = s.get(Callback, cb.id)
        assert row is not None
        assert got == json.loads(json.dumps(callback_view(row)))


@pytest.mark.parametrize(
    ("variable", "value"),
    [("redial_on", "answered"), ("redial_intervals", "30x"), ("redial_max", -1)],
)
def test_a_wrong_redial_default_stops_start_up_naming_the_variable(
    variable: str, value: object
) -> None:
    with pytest.raises(ConfigurationError, match=variable.upper()):
        load_settings(**{variable: value})
