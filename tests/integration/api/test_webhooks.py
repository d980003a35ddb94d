"""``/v1/webhooks`` and ``/v1/webhook-deliveries`` over HTTP: the contract's shapes, the
error envelope, and tenant isolation (another organization's id is a 404)."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.integration.api.conftest import NOW, Keys, bearer
from tests.support.factories import make_callback
from worker import lifecycle
from worker.webhooks.outbox import EVENT_TYPES

HOOK = "http://127.0.0.1:9/hooks"


def _create(client: TestClient, token: str, **body: object) -> dict[str, object]:
    response = client.post("/v1/webhooks", json={"url": HOOK, **body}, headers=bearer(token))
    assert response.status_code == 201, response.text
    data: dict[str, object] = response.json()
    return data


def test_create_shows_the_secret_once(client: TestClient, keys: Keys) -> None:
    created = _create(client, keys.a, events=["callback.failed"], description="crm")
    assert str(created["secret"]).startswith("whsec_")
    assert created["events"] == ["callback.failed"]
    assert created["enabled"] is True
    assert created["disabled_reason"] is None
    got = client.get(f"/v1/webhooks/{created['id']}", headers=bearer(keys.a)).json()
    assert "secret" not in got
    assert got == {k: v for k, v in created.items() if k != "secret"}
    listed = client.get("/v1/webhooks", headers=bearer(keys.a)).json()
    assert listed == {"webhooks": [got]}


def test_another_organizations_endpoint_is_not_found(client: TestClient, keys: Keys) -> None:
    created = _create(client, keys.a)
    path = f"/v1/webhooks/{created['id']}"
    for method, url in (
        ("GET", path),
        ("PATCH", path),
        ("DELETE", path),
        ("POST", path + "/rotate-secret"),
    ):
        response = client.request(method, url, json={}, headers=bearer(keys.b))
        assert response.status_code == 404, (method, url)
        assert response.json()["code"] == "NOT_FOUND"
    assert client.get("/v1/webhooks", headers=bearer(keys.b)).json() == {"webhooks": []}


def test_refused_urls_and_bad_events_are_400_envelopes(client: TestClient, keys: Keys) -> None:
    for body in (
        {"url": "https://169.254.169.254/latest/meta-data"},
        {"url": "https://10.0.0.1/hook"},
        {"url": "http://example.com/hook"},
        {"url": HOOK, "events": ["callback.nope"]},
        {"url": HOOK, "secret": "mine"},
    ):
        response = client.post("/v1/webhooks", json=body, headers=bearer(keys.a))
        assert response.status_code == 400, body
        assert set(response.json()) == {"error", "code"}
        assert response.json()["code"] == "VALIDATION_ERROR"
    assert client.post("/v1/webhooks", json={"url": HOOK}).status_code == 401


def test_patch_rotate_and_delete(client: TestClient, keys: Keys) -> None:
    created = _create(client, keys.a)
    path = f"/v1/webhooks/{created['id']}"
    patched = client.patch(
        path, json={"enabled": False, "events": sorted(EVENT_TYPES)[:1]}, headers=bearer(keys.a)
    ).json()
    assert patched["enabled"] is False
    assert patched["disabled_reason"]
    rotated = client.post(path + "/rotate-secret", headers=bearer(keys.a)).json()
    assert rotated["secret"] != created["secret"]
    assert rotated["previous_secret_expires_at"]
    assert client.delete(path, headers=bearer(keys.a)).status_code == 204
    assert client.get(path, headers=bearer(keys.a)).status_code == 404


def test_delivery_log_filters_pages_and_redelivers(
    client: TestClient, keys: Keys, pg_sessions: sessionmaker[Session]
) -> None:
    endpoint_id = str(_create(client, keys.a)["id"])
    with pg_sessions.begin() as session:
        ids = [make_callback(session).id for _ in range(3)]
        lifecycle.cancel(session, ids[0], organization_id="org_a", now=NOW, actor="t", reason=None)
    first = client.get("/v1/webhook-deliveries?limit=2", headers=bearer(keys.a)).json()
    assert len(first["deliveries"]) == 2
    assert first["next_cursor"]
    rest = client.get(
        f"/v1/webhook-deliveries?limit=2&cursor={first['next_cursor']}", headers=bearer(keys.a)
    ).json()
    assert len(rest["deliveries"]) == 2
    assert rest["next_cursor"] is None
    seen = {d["id"] for d in first["deliveries"] + rest["deliveries"]}
    assert len(seen) == 4
    cancelled = client.get(
        "/v1/webhook-deliveries",
        params={"event": "callback.cancelled", "callback_id": ids[0], "endpoint_id": endpoint_id},
        headers=bearer(keys.a),
    ).json()["deliveries"]
    assert [(d["event"], d["status"], d["sequence"]) for d in cancelled] == [
        ("callback.cancelled", "pending", 2)
    ]
    delivery_id = cancelled[0]["id"]
    assert (
        client.post(
            f"/v1/webhook-deliveries/{delivery_id}/redeliver", headers=bearer(keys.b)
        ).status_code
        == 404
    )
    assert client.get("/v1/webhook-deliveries", headers=bearer(keys.b)).json() == {
        "deliveries": [],
        "next_cursor": None,
    }
    redone = client.post(f"/v1/webhook-deliveries/{delivery_id}/redeliver", headers=bearer(keys.a))
    assert redone.status_code == 202
    client.patch(f"/v1/webhooks/{endpoint_id}", json={"enabled": False}, headers=bearer(keys.a))
    refused = client.post(f"/v1/webhook-deliveries/{delivery_id}/redeliver", headers=bearer(keys.a))
    assert refused.status_code == 409
    assert refused.json()["code"] == "CONFLICT"
    bad = client.get("/v1/webhook-deliveries?cursor=nonsense", headers=bearer(keys.a))
    assert bad.status_code == 400
    assert bad.json()["code"] == "VALIDATION_ERROR"
    bad = client.get("/v1/webhook-deliveries?status=lost", headers=bearer(keys.a))
    assert bad.status_code == 400
