"""``POST /v1/callbacks`` and ``PATCH /v1/callbacks/{id}`` (issue 16, items 2 and 3)."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.integration.api.conftest import NOW, FixedClock, Keys, bearer
from tests.support.factories import T0, make_callback
from worker import edits
from worker.actions import StatusConflict
from worker.claims import claim_due
from worker.db.models import Callback, CallbackEvent
from worker.status import Status

WHEN = "2026-03-02T15:00:00Z"


def body(**extra: Any) -> dict[str, Any]:
    return {"to_number": "+12015551234", "scheduled_at": WHEN, "reason": "asked", **extra}


def count(sessions: sessionmaker[Session]) -> int:
    with sessions() as s:
        return s.scalar(select(func.count()).select_from(Callback)) or 0


def events(sessions: sessionmaker[Session], callback_id: str) -> list[CallbackEvent]:
    with sessions() as s:
        return list(
            s.scalars(
                select(CallbackEvent)
                .where(CallbackEvent.callback_id == callback_id)
                .order_by(CallbackEvent.id)
            )
        )


# --- create ------------------------------------------------------------------------------


def test_create_answers_201_with_the_callback_for_the_keys_org(
    client: TestClient, keys: Keys, pg_sessions: sessionmaker[Session]
) -> None:
    r = client.post("/v1/callbacks", json=body(metadata={"k": 1}), headers=bearer(keys.a))
    assert r.status_code == 201, r.text
    cb = r.json()
    assert cb["organization_id"] == "org_a"
    assert cb["status"] == "scheduled"
    assert cb["scheduled_at"] == WHEN
    assert cb["metadata"] == {"k": 1}
    assert client.get(f"/v1/callbacks/{cb['id']}", headers=bearer(keys.a)).json() == cb
    assert client.get(f"/v1/callbacks/{cb['id']}", headers=bearer(keys.b)).status_code == 404
    (event,) = events(pg_sessions, cb["id"])
    assert event.actor == f"api:{keys.a_id}"
    with pg_sessions() as s:
        row = s.get(Callback, cb["id"])
        assert row is not None
        assert row.due_at == T0
        assert row.expires_at == T0 + timedelta(hours=4)


def test_same_idempotency_key_and_body_is_200_with_the_same_callback_other_body_409(
    client: TestClient, keys: Keys, pg_sessions: sessionmaker[Session]
) -> None:
    h = {**bearer(keys.a), "Idempotency-Key": "import-1"}
    first = client.post("/v1/callbacks", json=body(), headers=h)
    assert first.status_code == 201
    # The same body, scheduled_at in another offset: the same instant, so the same body.
    again = client.post(
        "/v1/callbacks", json=body(scheduled_at="2026-03-02T16:00:00+01:00"), headers=h
    )
    assert again.status_code == 200
    assert again.json() == first.json()
    other = client.post("/v1/callbacks", json=body(reason="other"), headers=h)
    assert other.status_code == 409
    assert other.json()["code"] == "CONFLICT"
    assert count(pg_sessions) == 1
    # Keys are per organization: org_b's "import-1" is its own.
    theirs = client.post(
        "/v1/callbacks", json=body(), headers={**bearer(keys.b), "Idempotency-Key": "import-1"}
    )
    assert theirs.status_code == 201
    assert count(pg_sessions) == 2


def test_concurrent_creates_with_one_key_make_one_callback(
    client: TestClient, keys: Keys, pg_sessions: sessionmaker[Session]
) -> None:
    h = {**bearer(keys.a), "Idempotency-Key": "race"}
    answers: list[tuple[int, str]] = []
    barrier = threading.Barrier(6)

    def create() -> None:
        barrier.wait()
        r = client.post("/v1/callbacks", json=body(), headers=h)
        answers.append((r.status_code, r.json()["id"]))

    threads = [threading.Thread(target=create) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(code for code, _ in answers) == [200] * 5 + [201]
    assert len({i for _, i in answers}) == 1
    assert count(pg_sessions) == 1


@pytest.mark.parametrize(
    ("fields", "headers"),
    [
        (body(to_number="2015551234"), {}),
        (body(to_number="+1201555"), {}),
        (body(scheduled_at="2026-03-02T15:00:00"), {}),
        (body(scheduled_at="2026-03-01T00:00:00Z"), {}),  # past its 4 h lateness
        (body(reason="a\u0000b"), {}),
        (body(metadata={"k\u0000": 1}), {}),
        (body(organization_id="org_b"), {}),
        (body(unknown="x"), {}),
        (body(idempotency_key="a"), {"Idempotency-Key": "b"}),
        ({"scheduled_at": WHEN}, {}),
        (body(), {"Idempotency-Key": "x" * 129}),
    ],
)
def test_bad_creates_are_400_and_store_nothing(
    client: TestClient,
    keys: Keys,
    pg_sessions: sessionmaker[Session],
    fields: dict[str, Any],
    headers: dict[str, str],
) -> None:
    r = client.post("/v1/callbacks", json=fields, headers={**bearer(keys.a), **headers})
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "VALIDATION_ERROR"
    assert count(pg_sessions) == 0


@pytest.mark.parametrize("raw", [b"", b"[]", b"{", b'"x"', b"[" * 100 + b"]" * 100])
def test_a_body_that_is_not_an_object_is_400(client: TestClient, keys: Keys, raw: bytes) -> None:
    r = client.post("/v1/callbacks", content=raw, headers=bearer(keys.a))
    assert r.status_code == 400
    assert r.json()["code"] == "VALIDATION_ERROR"


def test_create_without_a_key_is_401_before_the_body_is_read(client: TestClient) -> None:
    r = client.post("/v1/callbacks", content=b"{")
    assert r.status_code == 401


def test_organization_id_equal_to_the_keys_is_accepted(client: TestClient, keys: Keys) -> None:
    r = client.post("/v1/callbacks", json=body(organization_id="org_a"), headers=bearer(keys.a))
    assert r.status_code == 201


# --- edit ----------------------------------------------------------------------------------


def test_edit_reschedules_and_the_callback_becomes_due_at_the_new_time(
    client: TestClient, keys: Keys, pg_sessions: sessionmaker[Session]
) -> None:
    with pg_sessions.begin() as s:
        cb = make_callback(s, reason="old", metadata={"a": 1})
    new_at = T0 + timedelta(days=1)
    r = client.patch(
        f"/v1/callbacks/{cb.id}",
        json={
            "scheduled_at": "2026-03-03T16:00:00+01:00",
            "reason": "moved",
            "summary": None,
            "metadata": {"b": 2},
        },
        headers=bearer(keys.a),
    )
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["scheduled_at"] == "2026-03-03T15:00:00Z"
    assert (got["reason"], got["summary"], got["metadata"]) == ("moved", None, {"b": 2})
    assert got["status"] == "scheduled"
    with pg_sessions() as s:
        row = s.get(Callback, cb.id)
        assert row is not None
        assert row.due_at == new_at
        assert row.expires_at == new_at + timedelta(hours=4)
    *_, last = events(pg_sessions, cb.id)
    assert (last.from_status, last.to_status) == ("scheduled", "scheduled")
    assert last.actor == f"api:{keys.a_id}"
    assert last.detail["fields"] == ["metadata", "reason", "scheduled_at", "summary"]
    assert last.detail["scheduled_at"] == {
        "from": "2026-03-02T15:00:00Z",
        "to": got["scheduled_at"],
    }
    # Due at the new time: not claimed at the old one, claimed at the new one.
    with pg_sessions.begin() as s:
        assert (
            claim_due(s, now=T0 + timedelta(minutes=1), batch_size=10, lease=timedelta(minutes=5))
            == []
        )
    with pg_sessions.begin() as s:
        assert claim_due(s, now=new_at, batch_size=10, lease=timedelta(minutes=5)) == [cb.id]


@pytest.mark.parametrize("status", [s for s in Status if s is not Status.SCHEDULED])
def test_edit_is_409_naming_the_status_unless_scheduled(
    client: TestClient, keys: Keys, pg_sessions: sessionmaker[Session], status: Status
) -> None:
    with pg_sessions.begin() as s:
        cb = make_callback(s, status, reason="old")
    r = client.patch(f"/v1/callbacks/{cb.id}", json={"reason": "new"}, headers=bearer(keys.a))
    assert r.status_code == 409
    assert r.json() == {
        "error": f"Cannot reschedule a callback that is {status}",
        "code": "CONFLICT",
    }
    assert client.get(f"/v1/callbacks/{cb.id}", headers=bearer(keys.a)).json()["reason"] == "old"


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"scheduled_at": None},
        {"metadata": None},
        {"scheduled_at": "2026-03-04T10:00:00"},
        {"scheduled_at": "2026-03-01T00:00:00Z"},
        {"status": "cancelled"},
        {"to_number": "+12015550100"},
        {"reason": "x\u0000"},
        {"reason": 5},
    ],
)
def test_bad_edits_are_400_and_change_nothing(
    client: TestClient, keys: Keys, pg_sessions: sessionmaker[Session], fields: dict[str, Any]
) -> None:
    with pg_sessions.begin() as s:
        cb = make_callback(s, reason="old")
    before = client.get(f"/v1/callbacks/{cb.id}", headers=bearer(keys.a)).json()
    r = client.patch(f"/v1/callbacks/{cb.id}", json=fields, headers=bearer(keys.a))
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "VALIDATION_ERROR"
    assert client.get(f"/v1/callbacks/{cb.id}", headers=bearer(keys.a)).json() == before


def test_another_orgs_callback_is_404_to_an_edit(
    client: TestClient, keys: Keys, pg_sessions: sessionmaker[Session]
) -> None:
    with pg_sessions.begin() as s:
        cb = make_callback(s, org="org_b")
    for cid in (cb.id, "cb_missing", "cb%00"):
        r = client.patch(f"/v1/callbacks/{cid}", json={"reason": "x"}, headers=bearer(keys.a))
        assert r.status_code == 404
        assert r.json()["code"] == "NOT_FOUND"


def _race(sessions: sessionmaker[Session], cb_id: str) -> tuple[list[str], list[str]]:
    """The poller's claim and an edit of ``cb_id``, started together on two threads."""
    barrier = threading.Barrier(2)
    claimed: list[str] = []
    edited: list[str] = []

    def poll() -> None:
        barrier.wait()
        with sessions.begin() as s:
            claimed.extend(claim_due(s, now=NOW, batch_size=10, lease=timedelta(minutes=5)))

    def edit() -> None:
        barrier.wait()
        try:
            with sessions.begin() as s:
                later = edits.Edit(scheduled_at=NOW + timedelta(days=1))
                edits.edit(s, "org_a", cb_id, later, now=NOW, actor="api:test")
            edited.append("ok")
        except StatusConflict as exc:
            edited.append(str(exc.current))

    threads = [threading.Thread(target=poll), threading.Thread(target=edit)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return claimed, edited


def test_a_race_between_an_edit_and_the_pollers_claim_has_one_winner(
    pg_sessions: sessionmaker[Session],
) -> None:
    """Threads: the poller claims while an operator moves the time. Either the claim wins
    (the edit answers 409 dispatching, nothing changed) or the edit does (the claim finds
    nothing due); never both, never a claimed row with the new time."""
    for _ in range(12):
        with pg_sessions.begin() as s:
            cb = make_callback(s, scheduled_at=NOW - timedelta(minutes=1))
        claimed, edited = _race(pg_sessions, cb.id)
        with pg_sessions() as s:
            row = s.get(Callback, cb.id)
            assert row is not None
            if claimed:
                assert claimed == [cb.id]
                assert edited == ["dispatching"]
                assert row.status == Status.DISPATCHING
                assert row.scheduled_at == NOW - timedelta(minutes=1)
            else:
                assert edited == ["ok"]
                assert row.status == Status.SCHEDULED
                assert row.due_at == NOW + timedelta(days=1)
            moves = [(e.from_status, e.to_status) for e in events(pg_sessions, cb.id)][1:]
            assert moves in ([("scheduled", "dispatching")], [("scheduled", "scheduled")])


def test_clock_is_the_apis(client: TestClient, keys: Keys, clock: FixedClock) -> None:
    clock.at = NOW + timedelta(days=1)
    r = client.post("/v1/callbacks", json=body(), headers=bearer(keys.a))
    # Now a day later, 15:00 the day before is past its 4 h lateness.
    assert r.status_code == 400


def test_create_and_edit_are_logged_naming_the_callback(
    client: TestClient, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    cb = client.post("/v1/callbacks", json=body(), headers=bearer(keys.a)).json()
    client.patch(f"/v1/callbacks/{cb['id']}", json={"reason": "x"}, headers=bearer(keys.a))
    ours = [r for r in caplog.records if r.name.startswith("worker.")]
    lines = [r.getMessage() for r in ours if cb["id"] in r.getMessage()]
    assert any("created by api:" in line for line in lines), lines
    # The edit's line is the lifecycle's transition line, naming the callback and key.
    assert len([line for line in lines if f"by api:{keys.a_id}" in line]) == 2, lines
    assert not any("+12015551234" in r.getMessage() for r in caplog.records)
