"""GET /v1/callbacks and GET /v1/callbacks/{id}: shape, defaults, limits, filters, order."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.integration.api.conftest import Keys, bearer
from tests.support.factories import T0, make_callback
from worker.db.models import Callback
from worker.serializer import callback_view
from worker.status import Status


@pytest.fixture(params=["threads", "loop"])
def api_reads(request: pytest.FixtureRequest) -> str:
    """Every read here, with the reads in the threadpool and on the event loop."""
    return str(request.param)


FIELDS = {
    "id", "organization_id", "source_session_id", "created_session_id", "agent_id",
    "phone_number_id", "to_number", "from_number", "scheduled_at", "status", "reason",
    "instructions", "summary", "pipeline_config", "metadata", "failure_cause", "attempted_at",
    "dispatched_at", "cancelled_at", "created_at", "updated_at",
    "call_outcome", "call_outcome_at",  # issue 14, additive
}  # fmt: skip
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def ids(response_json: dict[str, list[dict[str, str]]]) -> list[str]:
    return [c["id"] for c in response_json["callbacks"]]


def test_get_returns_every_field_with_nulls_and_utc_timestamps(
    client: TestClient, keys: Keys, pg_sessions: sessionmaker[Session]
) -> None:
    with pg_sessions.begin() as s:
        cb = make_callback(
            s,
            Status.DISPATCHED,
            source_session_id="sess_src",
            agent_id="agent_1",
            metadata={"k": [1, 2]},
            pipeline_config={"voice": "alloy"},
            attempted_at=T0,
        )
    r = client.get(
        f"/v1/callbacks/{cb.id}",
        headers={**bearer(keys.a), "Content-Type": "application/json"},
    )
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert set(body) == FIELDS
    assert body["id"] == cb.id
    assert body["organization_id"] == "org_a"
    assert body["status"] == "dispatched"
    assert body["source_session_id"] == "sess_src"
    assert body["from_number"] is None
    assert body["cancelled_at"] is None
    assert body["created_session_id"] == f"sess_{cb.id}"
    assert body["metadata"] == {"k": [1, 2]}
    assert body["pipeline_config"] == {"voice": "alloy"}
    for name in ("scheduled_at", "attempted_at", "dispatched_at", "created_at", "updated_at"):
        assert RFC3339_UTC.match(body[name]), (name, body[name])
    assert body["scheduled_at"] == "2026-03-02T15:00:00Z"


def test_list_newest_first_with_id_breaking_ties(
    client: TestClient, keys: Keys, pg_sessions: sessionmaker[Session]
) -> None:
    with pg_sessions.begin() as s:
        made = [make_callback(s, created_at=T0 - timedelta(hours=2 - i // 2)).id for i in range(6)]
    r = client.get("/v1/callbacks", headers=bearer(keys.a))
    assert r.status_code == 200
    by_time = sorted(made, key=lambda i: (made.index(i) // 2, i), reverse=True)
    assert ids(r.json()) == by_time


def test_limit_defaults_to_25_and_accepts_1_to_100(
    client: TestClient, keys: Keys, pg_sessions: sessionmaker[Session]
) -> None:
    with pg_sessions.begin() as s:
        for i in range(101):
            make_callback(s, created_at=T0 - timedelta(minutes=i))

    def get(query: str) -> Any:
        return client.get(f"/v1/callbacks{query}", headers=bearer(keys.a))

    assert len(get("").json()["callbacks"]) == 25
    assert len(get("?limit=1").json()["callbacks"]) == 1
    assert len(get("?limit=100").json()["callbacks"]) == 100
    assert ids(get("?limit=3").json()) == ids(get("").json())[:3]


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=101",
        "limit=abc",
        "limit=-1",
        "limit=1.5",
        "limit=",
        "status=unknown",
        "status=SCHEDULED",
        "status=",
    ],
)
def test_bad_query_is_400_validation_error(client: TestClient, keys: Keys, query: str) -> None:
    r = client.get(f"/v1/callbacks?{query}", headers=bearer(keys.a))
    assert r.status_code == 400
    body = r.json()
    assert set(body) == {"error", "code"}
    assert body["code"] == "VALIDATION_ERROR"


@pytest.mark.parametrize("status", list(Status))
def test_filter_by_status(
    client: TestClient, keys: Keys, pg_sessions: sessionmaker[Session], status: Status
) -> None:
    with pg_sessions.begin() as s:
        made = {st: make_callback(s, st).id for st in Status}
        make_callback(s, status, org="org_b")
    r = client.get(f"/v1/callbacks?status={status}", headers=bearer(keys.a))
    assert r.status_code == 200
    assert ids(r.json()) == [made[status]]


def test_filter_by_source_session_and_status_together(
    client: TestClient, keys: Keys, pg_sessions: sessionmaker[Session]
) -> None:
    with pg_sessions.begin() as s:
        wanted = make_callback(s, source_session_id="sess_1").id
        make_callback(s, Status.CANCELLED, source_session_id="sess_1")
        make_callback(s, source_session_id="sess_2")
        make_callback(s, org="org_b", source_session_id="sess_1")
    r = client.get("/v1/callbacks?source_session_id=sess_1", headers=bearer(keys.a))
    assert len(r.json()["callbacks"]) == 2
    r = client.get(
        "/v1/callbacks?source_session_id=sess_1&status=scheduled", headers=bearer(keys.a)
    )
    assert ids(r.json()) == [wanted]
    r = client.get("/v1/callbacks?source_session_id=%00", headers=bearer(keys.a))
    assert r.json() == {"callbacks": [], "next_cursor": None}


def test_empty_list(client: TestClient, keys: Keys) -> None:
    r = client.get("/v1/callbacks", headers=bearer(keys.a))
    assert r.status_code == 200
    assert r.json() == {"callbacks": [], "next_cursor": None}


@pytest.mark.parametrize("callback_id", ["cb_missing", "x" * 300, "%00", "%C3%A9"])
def test_get_unknown_is_404(client: TestClient, keys: Keys, callback_id: str) -> None:
    r = client.get(f"/v1/callbacks/{callback_id}", headers=bearer(keys.a))
    assert r.status_code == 404
    assert r.json() == {"error": "Callback not found", "code": "NOT_FOUND"}


@pytest.mark.parametrize(
    "metadata",
    [
        {"k": [1, 2.5, None, True], "nested": {"ü": "Grüße, 電話"}},
        # Beyond 64 bits: orjson refuses it, the fallback still serves the stored document.
        {"big": 2**70, "neg": -(2**65)},
    ],
)
def test_reads_answer_exactly_what_callback_view_says(
    client: TestClient, keys: Keys, pg_sessions: sessionmaker[Session], metadata: dict[str, Any]
) -> None:
    """The reads are a Core select + orjson (worker.api.reads); the ORM view is the reference."""
    with pg_sessions.begin() as s:
        cb = make_callback(
            s,
            Status.DISPATCHED,
            source_session_id="sess_src",
            reason="rappeler — demain",
            metadata=metadata,
            pipeline_config={"voice": "alloy", "ttsOptions": {"speed": 1.25}},
            attempted_at=T0 + timedelta(microseconds=123456),
            dispatched_at=T0 + timedelta(seconds=1),
        )
    with pg_sessions() as s:
        row = s.get(Callback, cb.id)
        assert row is not None
        expected = json.loads(json.dumps(callback_view(row)))
    got = client.get(f"/v1/callbacks/{cb.id}", headers=bearer(keys.a))
    assert got.headers["content-type"] == "application/json"
    assert got.json() == expected
    assert expected["attempted_at"].endswith(".123456Z")
    listed = client.get("/v1/callbacks?source_session_id=sess_src", headers=bearer(keys.a))
    assert listed.json() == {"callbacks": [expected], "next_cursor": None}
