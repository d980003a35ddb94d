"""Hostile requests at the edge: each answers the ``{error, code}`` envelope with its
status, never a 500 or a redirect, and changes nothing."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.integration.api.conftest import Keys, bearer
from tests.support.factories import make_callback
from worker.api.edge import MAX_BODY
from worker.db.models import Callback, CallbackEvent
from worker.status import Status

JSON = {"Content-Type": "application/json"}


def _events(sessions: sessionmaker[Session]) -> int:
    with sessions() as s:
        return s.scalar(select(func.count()).select_from(CallbackEvent)) or 0


def _status(sessions: sessionmaker[Session], callback_id: str) -> Status:
    with sessions() as s:
        return s.get_one(Callback, callback_id).status


@pytest.fixture
def scheduled(pg_sessions: sessionmaker[Session]) -> str:
    with pg_sessions.begin() as s:
        return make_callback(s).id


# item 8 -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "[" * 1_000 + "]" * 1_000,
        '{"reason": ' + "[" * 5_000 + "]" * 5_000 + "}",
        '{"a":' * 1_000 + "1" + "}" * 1_000,
    ],
)
def test_deeply_nested_body_is_400_and_changes_nothing(
    client: TestClient, keys: Keys, pg_sessions: sessionmaker[Session], scheduled: str, body: str
) -> None:
    before = _events(pg_sessions)
    r = client.post(
        f"/v1/callbacks/{scheduled}/cancel", content=body, headers={**bearer(keys.a), **JSON}
    )
    assert r.status_code == 400, r.text
    assert r.json() == {
        "error": "Invalid request body: nested deeper than 32 levels",
        "code": "VALIDATION_ERROR",
    }
    assert _events(pg_sessions) == before
    assert _status(pg_sessions, scheduled) is Status.SCHEDULED


def test_brackets_inside_strings_do_not_count_as_nesting(
    client: TestClient, keys: Keys, scheduled: str
) -> None:
    reason = '[{"\\"' * 50
    r = client.post(
        f"/v1/callbacks/{scheduled}/cancel", json={"reason": reason}, headers=bearer(keys.a)
    )
    assert r.status_code == 200, r.text


# item 9 -----------------------------------------------------------------------------


def _chunks(total: int, size: int = 64 * 1024) -> object:
    sent = 0
    while sent < total:
        yield b" " * min(size, total - sent)
        sent += size


@pytest.mark.parametrize("declared", [True, False])
def test_body_over_the_limit_is_413_and_changes_nothing(
    client: TestClient,
    keys: Keys,
    pg_sessions: sessionmaker[Session],
    scheduled: str,
    declared: bool,
) -> None:
    before = _events(pg_sessions)
    for action in ("cancel", "dispatch"):
        if declared:
            r = client.post(
                f"/v1/callbacks/{scheduled}/{action}",
                content=b" " * (MAX_BODY + 1),
                headers={**bearer(keys.a), **JSON},
            )
        else:  # chunked, no Content-Length: counted as it streams
            r = client.post(
                f"/v1/callbacks/{scheduled}/{action}",
                content=_chunks(10 * MAX_BODY),  # type: ignore[arg-type]
                headers={**bearer(keys.a), **JSON},
            )
        assert r.status_code == 413, r.text
        assert r.json() == {
            "error": f"Request body too large: at most {MAX_BODY} bytes",
            "code": "PAYLOAD_TOO_LARGE",
        }
    assert _events(pg_sessions) == before
    assert _status(pg_sessions, scheduled) is Status.SCHEDULED


def test_body_at_the_limit_is_read(client: TestClient, keys: Keys, scheduled: str) -> None:
    body = b'{"reason": "asked"}'
    body += b" " * (MAX_BODY - len(body))
    r = client.post(
        f"/v1/callbacks/{scheduled}/cancel", content=body, headers={**bearer(keys.a), **JSON}
    )
    assert (r.status_code, r.json()["status"]) == (200, "cancelled")


# item 10 ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/callbacks/"),
        ("GET", "/healthz/"),
        ("POST", "/v1/callbacks/{id}/cancel/"),
        ("POST", "/v1/callbacks/{id}/dispatch/"),
        ("GET", "/v1/callbacks/{id}/"),
    ],
)
def test_trailing_slash_is_404_envelope_never_a_redirect(
    client: TestClient,
    keys: Keys,
    pg_sessions: sessionmaker[Session],
    scheduled: str,
    method: str,
    path: str,
) -> None:
    r = client.request(
        method,
        path.format(id=scheduled),
        headers={**bearer(keys.a), "Host": "evil.example"},
        follow_redirects=False,
    )
    assert r.status_code == 404
    assert "location" not in r.headers
    assert r.json() == {"error": "Not found", "code": "NOT_FOUND"}
    assert _status(pg_sessions, scheduled) is Status.SCHEDULED


# item 11 ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/v1/callbacks/{id}%2Fcancel",
        "/v1/callbacks/{id}%2fdispatch",
        "/v1/callbacks/{id}%5Ccancel",
        "/v1/callbacks%2F{id}/cancel",
        "/v1/callbacks/{id}%252Fcancel",
    ],
)
def test_an_encoded_separator_never_splits_an_id(
    client: TestClient,
    keys: Keys,
    pg_sessions: sessionmaker[Session],
    scheduled: str,
    path: str,
) -> None:
    before = _events(pg_sessions)
    for method in ("POST", "GET"):
        r = client.request(method, path.format(id=scheduled), headers=bearer(keys.a))
        assert r.status_code == 404, r.text
        assert set(r.json()) == {"error", "code"}
        assert r.json()["code"] == "NOT_FOUND"
    assert _events(pg_sessions) == before
    assert _status(pg_sessions, scheduled) is Status.SCHEDULED


# item 12 ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_head_answers_like_get_without_a_body(client: TestClient, path: str) -> None:
    got = client.get(path)
    head = client.head(path)
    assert head.status_code == got.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    assert head.headers["content-length"] == got.headers["content-length"]


# item 13 ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "why"),
    [
        ("limit=3&limit=1", "limit: given more than once"),
        ("status=scheduled&status=cancelled", "status: given more than once"),
        ("source_session_id=a&source_session_id=b", "source_session_id: given more than once"),
        ("limit=1_0", "limit: must be a plain decimal integer"),
        ("limit=%2B5", "limit: must be a plain decimal integer"),
        ("limit=05", "limit: must be a plain decimal integer"),
        ("limit=%205", "limit: must be a plain decimal integer"),
        ("limit=5%20", "limit: must be a plain decimal integer"),
        ("limit=5%0A", "limit: must be a plain decimal integer"),
        ("limit=%EF%BC%95", "limit: must be a plain decimal integer"),  # fullwidth 5
        ("status=%20scheduled", "status"),
    ],
)
def test_ambiguous_query_is_400_saying_why(
    client: TestClient, keys: Keys, query: str, why: str
) -> None:
    r = client.get(f"/v1/callbacks?{query}", headers=bearer(keys.a))
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "VALIDATION_ERROR"
    assert why in r.json()["error"]


@pytest.mark.parametrize("query", ["endpoint_id=%00", "callback_id=cb_%00", "event=%00"])
def test_a_delivery_filter_no_row_can_hold_finds_nothing(
    client: TestClient, keys: Keys, query: str
) -> None:
    # Found by schemathesis: PostgreSQL refused the NUL and the API answered 500.
    r = client.get(f"/v1/webhook-deliveries?{query}", headers=bearer(keys.a))
    assert r.status_code == 200, r.text
    assert r.json() == {"deliveries": [], "next_cursor": None}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/webhooks/%00"),
        ("PATCH", "/v1/webhooks/%00"),
        ("DELETE", "/v1/webhooks/%00"),
        ("POST", "/v1/webhooks/wh_%00/rotate-secret"),
        ("POST", "/v1/webhook-deliveries/%00/redeliver"),
    ],
)
def test_a_webhook_id_no_row_can_hold_is_404(
    client: TestClient, keys: Keys, method: str, path: str
) -> None:
    # PostgreSQL refused the NUL and the API answered 500.
    body: dict[str, object] | None = {} if method in ("PATCH", "POST") else None
    r = client.request(method, path, headers=bearer(keys.a), json=body)
    assert r.status_code == 404, r.text


def test_plain_queries_and_unknown_parameters_still_work(
    client: TestClient, keys: Keys, scheduled: str
) -> None:
    r = client.get("/v1/callbacks?limit=10&status=scheduled&page=2&page=3", headers=bearer(keys.a))
    assert r.status_code == 200, r.text
    assert [c["id"] for c in r.json()["callbacks"]] == [scheduled]
