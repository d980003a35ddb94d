"""The plain reads answered before FastAPI's stack: byte for byte the routes' answers, and
everything that is not a plain 200 goes through the routes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from celery import Celery
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.integration.api.conftest import FixedClock, Keys, bearer
from tests.support.factories import T0, make_callback
from worker.api.app import create_app
from worker.api.fast_reads import FastReads
from worker.settings import Settings
from worker.status import Status


@pytest.fixture(params=["threads", "loop"])
def api_reads(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def ids(pg_sessions: sessionmaker[Session]) -> list[str]:
    with pg_sessions.begin() as s:
        made = [
            make_callback(s, created_at=T0 - timedelta(hours=2, seconds=i)).id for i in range(30)
        ]
        made.append(make_callback(s, Status.DISPATCHED, metadata={"crm": "x"}).id)
        made.append(make_callback(s, org="org_b").id)
    return made


class Recorder:
    """The app behind the fast path: records which requests reached it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.seen: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.seen.append(scope["path"])
        await self.app(scope, receive, send)


@pytest.fixture
def slow_app(
    api_settings: Settings,
    pg_sessions: sessionmaker[Session],
    celery_app: Celery,
    clock: FixedClock,
) -> FastAPI:
    return create_app(
        api_settings, sessions=pg_sessions, celery=celery_app, clock=clock, fast_reads=False
    )


@pytest.fixture
def both(app: FastAPI, slow_app: FastAPI) -> Iterator[tuple[TestClient, TestClient]]:
    with TestClient(app) as fast, TestClient(slow_app) as slow:
        yield fast, slow


def _requests(ids: list[str], keys: Keys) -> list[tuple[str, dict[str, str]]]:
    a, b = bearer(keys.a), bearer(keys.b)
    paths = [
        f"/v1/callbacks/{ids[0]}",
        f"/v1/callbacks/{ids[-2]}",
        f"/v1/callbacks/{ids[-1]}",  # org_b's: not found for org_a
        "/v1/callbacks/cb_missing",
        "/v1/callbacks/cancel",
        "/v1/callbacks/",
        f"/v1/callbacks/{ids[0]}?x=1",
        f"/v1/callbacks/{ids[0][:-1]}%{ord(ids[0][-1]):02X}",
        "/v1/callbacks/a%2Fb",
        "/v1/callbacks/%C4%80",
        "/v1/callbacks",
        "/v1/callbacks?limit=25",
        "/v1/callbacks?limit=1",
        "/v1/callbacks?limit=100",
        "/v1/callbacks?limit=0",
        "/v1/callbacks?limit=101",
        "/v1/callbacks?limit=05",
        "/v1/callbacks?limit=+5",
        "/v1/callbacks?limit=25&limit=3",
        "/v1/callbacks?limit=25&status=scheduled",
        "/v1/callbacks?status=bogus",
        "/v1/callbacks?cursor=abc",
        "/v1/callbacks?unknown=1",
    ]
    auths = [
        a,
        b,
        {},
        bearer("sk_live_unknown"),
        bearer(keys.revoked),
        {"Authorization": "bearer " + keys.a},
        {"Authorization": "Basic " + keys.a},
    ]
    return [(p, h) for p in paths for h in auths]


def test_every_answer_is_the_routes_answer(
    both: tuple[TestClient, TestClient], ids: list[str], keys: Keys
) -> None:
    fast, slow = both
    for _ in range(2):  # the second time, the keys are remembered: the fast path answers
        for path, headers in _requests(ids, keys):
            got = fast.get(path, headers=headers)
            want = slow.get(path, headers=headers)
            assert (got.status_code, got.content) == (want.status_code, want.content), path
            assert got.headers.multi_items() == want.headers.multi_items(), path


def test_a_get_with_a_body_is_the_routes(
    both: tuple[TestClient, TestClient], ids: list[str], keys: Keys
) -> None:
    fast, slow = both
    for client in (fast, slow, fast):
        r = client.request("GET", "/v1/callbacks", headers=bearer(keys.a), content=b"x" * 70_000)
        assert r.status_code == 413


def test_only_plain_reads_of_a_remembered_key_skip_the_routes(
    app: FastAPI, ids: list[str], keys: Keys
) -> None:
    inner = Recorder(app)
    with TestClient(FastReads(inner, fastapi=app)) as client:
        first = client.get(f"/v1/callbacks/{ids[0]}", headers=bearer(keys.a))
        assert first.status_code == 200
        assert inner.seen == [f"/v1/callbacks/{ids[0]}"]  # the key was not remembered yet
        inner.seen.clear()
        plain = [f"/v1/callbacks/{ids[0]}", "/v1/callbacks", "/v1/callbacks?limit=7"]
        for path in plain:
            assert client.get(path, headers=bearer(keys.a)).status_code == 200
        assert inner.seen == []
        others = [
            "/v1/callbacks/cb_missing",  # 404: the routes answer it
            "/v1/callbacks?limit=7&status=scheduled",
            "/v1/callbacks?limit=07",
            f"/v1/callbacks/{ids[0]}?x=1",
        ]
        for path in others:
            client.get(path, headers=bearer(keys.a))
        assert client.post(f"/v1/callbacks/{ids[0]}/cancel", headers=bearer(keys.a)).is_success
        assert client.get(f"/v1/callbacks/{ids[0]}", headers=bearer(keys.b)).status_code == 404
        assert inner.seen == [p.split("?")[0] for p in others] + [
            f"/v1/callbacks/{ids[0]}/cancel",
            f"/v1/callbacks/{ids[0]}",
        ]
