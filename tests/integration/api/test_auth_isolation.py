"""Every auth failure on every route is the same 401; another org's callback is a 404."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.integration.api.conftest import NOW, Keys, bearer
from tests.support.factories import make_callback
from worker.api.auth import KEY_CACHE_SECONDS, KeyCache
from worker.apikeys import create_key, hash_token, revoke_key
from worker.db.models import ApiKey, Callback
from worker.status import Status


@pytest.fixture(params=["threads", "loop"])
def api_reads(request: pytest.FixtureRequest) -> str:
    """Every read here, with the reads in the threadpool and on the event loop."""
    return str(request.param)


UNAUTHORIZED = {"error": "Unauthorized", "code": "UNAUTHORIZED"}
ROUTES = [
    ("GET", "/v1/callbacks"),
    ("GET", "/v1/callbacks/{id}"),
    ("POST", "/v1/callbacks/{id}/cancel"),
    ("POST", "/v1/callbacks/{id}/dispatch"),
]
BAD_HEADERS: dict[str, dict[str, str]] = {
    "missing": {},
    "empty": {"Authorization": ""},
    "basic scheme": {"Authorization": "Basic dXNlcjpwYXNz"},
    "no scheme": {"Authorization": "sk_live_abc"},
    "scheme only": {"Authorization": "Bearer"},
    "unknown key": {"Authorization": "Bearer sk_live_" + "A" * 43},
    "not our format": {"Authorization": "Bearer hunter2"},
    "very long": {"Authorization": "Bearer sk_live_" + "A" * 5000},
}


@pytest.fixture
def callback_id(pg_sessions: sessionmaker[Session]) -> str:
    with pg_sessions.begin() as s:
        return make_callback(s).id


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize("case", [*BAD_HEADERS, "revoked key"])
def test_auth_failures_are_401_with_www_authenticate(
    client: TestClient,
    keys: Keys,
    pg_sessions: sessionmaker[Session],
    callback_id: str,
    method: str,
    path: str,
    case: str,
) -> None:
    headers = bearer(keys.revoked) if case == "revoked key" else BAD_HEADERS[case]
    # A bad body too: authentication is checked first.
    r = client.request(
        method,
        path.format(id=callback_id),
        headers={**headers, "Content-Type": "application/json"},
        content=b"{" if method == "POST" else None,
    )
    assert r.status_code == 401
    assert r.json() == UNAUTHORIZED
    assert r.headers["www-authenticate"] == "Bearer"
    with pg_sessions() as s:
        cb = s.get(Callback, callback_id)
        assert cb is not None
        assert cb.status == Status.SCHEDULED


@pytest.mark.parametrize(("method", "path"), ROUTES[1:])
def test_another_orgs_callback_is_404_like_a_missing_one(
    client: TestClient,
    keys: Keys,
    pg_sessions: sessionmaker[Session],
    callback_id: str,
    method: str,
    path: str,
) -> None:
    theirs = client.request(method, path.format(id=callback_id), headers=bearer(keys.b), json={})
    missing = client.request(method, path.format(id="cb_missing"), headers=bearer(keys.b), json={})
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json() == missing.json() == {"error": "Callback not found", "code": "NOT_FOUND"}
    assert theirs.headers == missing.headers
    with pg_sessions() as s:
        cb = s.get(Callback, callback_id)
        assert cb is not None
        assert cb.status == Status.SCHEDULED


def test_list_shows_only_the_keys_organization(
    client: TestClient, keys: Keys, pg_sessions: sessionmaker[Session]
) -> None:
    with pg_sessions.begin() as s:
        mine = make_callback(s, source_session_id="s1").id
        theirs = make_callback(s, org="org_b", source_session_id="s1").id
    for query in ("", "?status=scheduled", "?source_session_id=s1"):
        a = client.get(f"/v1/callbacks{query}", headers=bearer(keys.a)).json()
        b = client.get(f"/v1/callbacks{query}", headers=bearer(keys.b)).json()
        assert [c["id"] for c in a["callbacks"]] == [mine]
        assert [c["id"] for c in b["callbacks"]] == [theirs]


def test_lowercase_scheme_is_accepted(client: TestClient, keys: Keys) -> None:
    r = client.get("/v1/callbacks", headers={"Authorization": f"bearer {keys.a}"})
    assert r.status_code == 200


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_revoked_key_stops_working_within_the_cache_bound(
    app: FastAPI, client: TestClient, keys: Keys, pg_sessions: sessionmaker[Session]
) -> None:
    clock = FakeMonotonic()
    app.state.key_cache = KeyCache(clock=clock)
    assert client.get("/v1/callbacks", headers=bearer(keys.a)).status_code == 200
    with pg_sessions.begin() as s:
        assert revoke_key(s, keys.a_id, now=NOW)
    clock.now += KEY_CACHE_SECONDS
    r = client.get("/v1/callbacks", headers=bearer(keys.a))
    assert (r.status_code, r.json()) == (401, UNAUTHORIZED)
    # And it is not remembered as good again.
    clock.now += 0.001
    assert client.get("/v1/callbacks", headers=bearer(keys.a)).status_code == 401


def test_a_new_key_works_at_once_after_its_token_was_refused(
    app: FastAPI, client: TestClient, pg_sessions: sessionmaker[Session]
) -> None:
    app.state.key_cache = KeyCache(clock=FakeMonotonic())
    with pg_sessions.begin() as s:
        key, token = create_key(s, "org_a", now=NOW)
        s.delete(key)
    assert client.get("/v1/callbacks", headers=bearer(token)).status_code == 401
    with pg_sessions.begin() as s:
        s.add(ApiKey(id=key.id, organization_id="org_a", token_hash=hash_token(token),
                     created_at=NOW, revoked_at=None))  # fmt: skip
    assert client.get("/v1/callbacks", headers=bearer(token)).status_code == 200


def test_cached_keys_keep_tenants_apart(
    client: TestClient, keys: Keys, pg_sessions: sessionmaker[Session]
) -> None:
    with pg_sessions.begin() as s:
        mine = make_callback(s).id
        theirs = make_callback(s, org="org_b").id
    for _ in range(3):  # the first round verifies each key, the next ones hit the cache
        assert client.get(f"/v1/callbacks/{mine}", headers=bearer(keys.a)).status_code == 200
        assert client.get(f"/v1/callbacks/{theirs}", headers=bearer(keys.a)).status_code == 404
        assert client.get(f"/v1/callbacks/{theirs}", headers=bearer(keys.b)).status_code == 200
        assert client.get(f"/v1/callbacks/{mine}", headers=bearer(keys.b)).status_code == 404
        a = client.get("/v1/callbacks", headers=bearer(keys.a)).json()["callbacks"]
        b = client.get("/v1/callbacks", headers=bearer(keys.b)).json()["callbacks"]
        assert ([c["id"] for c in a], [c["id"] for c in b]) == ([mine], [theirs])
