"""Sign-in, the session cookie, sign-out, and CSRF on the login and logout forms."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.integration.api.conftest import NOW
from tests.integration.api.console.conftest import ConsoleKeys, csrf_of, sign_in
from worker.apikeys import revoke_key


def test_unsigned_pages_go_to_the_login(client: TestClient) -> None:
    for path in ("/console", "/console/callbacks", "/console/callbacks/cb_x"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"] == "/console/login"


def test_sign_in_sets_a_strict_httponly_expiring_cookie(
    client: TestClient, console_keys: ConsoleKeys
) -> None:
    page = client.get("/console/login")
    assert page.status_code == 200
    assert "default-src 'none'" in page.headers["content-security-policy"]
    response = client.post(
        "/console/login",
        data={"api_key": console_keys.a, "csrf": csrf_of(page.text)},
        follow_redirects=False,
    )
    assert response.status_code == 303
    cookie = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith("callbacks_console=")
    )
    lowered = cookie.lower()
    assert "httponly" in lowered
    assert "samesite=strict" in lowered
    assert "max-age=28800" in lowered
    assert "path=/console" in lowered
    assert "secure" not in lowered  # plain http here: a Secure cookie would not come back
    home = client.get("/console")
    assert home.status_code == 200
    assert "org_a" in home.text


def test_secure_cookie_behind_https(client: TestClient, console_keys: ConsoleKeys) -> None:
    page = client.get("/console/login")
    response = client.post(
        "/console/login",
        data={"api_key": console_keys.a, "csrf": csrf_of(page.text)},
        headers={"X-Forwarded-Proto": "https"},
        follow_redirects=False,
    )
    cookie = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith("callbacks_console=")
    )
    assert "secure" in cookie.lower()


def test_a_wrong_key_is_refused(client: TestClient, console_keys: ConsoleKeys) -> None:
    page = client.get("/console/login")
    response = client.post(
        "/console/login",
        data={"api_key": "sk_live_nope", "csrf": csrf_of(page.text)},
        follow_redirects=False,
    )
    assert response.status_code == 401
    assert "not valid" in response.text
    assert client.get("/console", follow_redirects=False).status_code == 303


def test_login_without_its_csrf_token_signs_nobody_in(
    client: TestClient, console_keys: ConsoleKeys
) -> None:
    client.get("/console/login")
    response = client.post(
        "/console/login", data={"api_key": console_keys.a}, follow_redirects=False
    )
    assert response.status_code == 403
    assert client.get("/console", follow_redirects=False).status_code == 303


def test_login_from_another_origin_is_refused(
    client: TestClient, console_keys: ConsoleKeys
) -> None:
    page = client.get("/console/login")
    response = client.post(
        "/console/login",
        data={"api_key": console_keys.a, "csrf": csrf_of(page.text)},
        headers={"Origin": "https://evil.example"},
        follow_redirects=False,
    )
    assert response.status_code == 403


def test_sign_out_needs_the_token_and_ends_the_session(
    client: TestClient, console_keys: ConsoleKeys
) -> None:
    csrf = sign_in(client, console_keys.a)
    cookie = client.cookies.get("callbacks_console")
    refused = client.post("/console/logout", data={}, follow_redirects=False)
    assert refused.status_code == 403
    assert client.get("/console").status_code == 200
    done = client.post("/console/logout", data={"csrf": csrf}, follow_redirects=False)
    assert done.status_code == 303
    # The old cookie, replayed, is dead on the server too.
    client.cookies.set("callbacks_console", cookie or "", path="/console")
    assert client.get("/console", follow_redirects=False).status_code == 303


def test_revoking_the_key_ends_its_sessions(
    client: TestClient, console_keys: ConsoleKeys, pg_sessions: sessionmaker[Session]
) -> None:
    sign_in(client, console_keys.a)
    with pg_sessions.begin() as s:
        assert revoke_key(s, console_keys.a_id, now=NOW)
    assert client.get("/console", follow_redirects=False).status_code == 303


def test_sessions_expire(client: TestClient, console_keys: ConsoleKeys, clock: object) -> None:
    from datetime import timedelta

    sign_in(client, console_keys.a)
    clock.at = NOW + timedelta(hours=8, seconds=1)  # type: ignore[attr-defined]
    assert client.get("/console", follow_redirects=False).status_code == 303
