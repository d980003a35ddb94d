"""Every auth failure on every route is the same 401; another org's callback is a 404."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.integration.api.conftest import Keys, bearer
from tests.support.factories import make_callback
from worker.db.models import Callback
from worker.status import Status

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
