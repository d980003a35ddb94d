"""The API additions of issue 16 against a client written from the contract alone.

``ContractClient`` knows only what ``shared/DESIGN.md`` says ("Admin API additions" and
the admin API section): paths, query parameters, field names, status codes and the
``{error, code}`` body. It talks plain httpx to a real ``callbacks api`` process on
PostgreSQL: cursor pages stay stable while another thread creates callbacks, a create
with an Idempotency-Key is idempotent, and a change is accepted only while scheduled.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy.orm import Session, sessionmaker

from tests.e2e.test_api_process import API_REDIS_URL, free_port

pytestmark = pytest.mark.e2e
CLI = [sys.executable, "-m", "worker.cli.main"]


class ContractClient:
    """``/v1/callbacks`` as the contract states it; nothing from this repository's code."""

    def __init__(self, base_url: str, token: str) -> None:
        self.http = httpx.Client(
            base_url=base_url, timeout=10, headers={"Authorization": f"Bearer {token}"}
        )

    def page(self, cursor: str | None = None, **filters: Any) -> dict[str, Any]:
        params = {**filters, **({"cursor": cursor} if cursor else {})}
        r = self.http.get("/v1/callbacks", params=params)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        assert set(body) >= {"callbacks", "next_cursor"}
        return body

    def create(self, body: dict[str, Any], key: str | None = None) -> httpx.Response:
        headers = {} if key is None else {"Idempotency-Key": key}
        return self.http.post("/v1/callbacks", json=body, headers=headers)

    def change(self, callback_id: str, fields: dict[str, Any]) -> httpx.Response:
        return self.http.patch(f"/v1/callbacks/{callback_id}", json=fields)

    def cancel(self, callback_id: str) -> httpx.Response:
        return self.http.post(f"/v1/callbacks/{callback_id}/cancel", json={})

    def get(self, callback_id: str) -> httpx.Response:
        return self.http.get(f"/v1/callbacks/{callback_id}")


def _when(days: int = 1) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).replace(microsecond=0).isoformat()


def new(**extra: Any) -> dict[str, Any]:
    return {"to_number": "+12015550123", "scheduled_at": _when(), **extra}


def envelope(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "code"}
    assert body["code"] == code


@pytest.fixture
def api(pg_url: str, pg_sessions: sessionmaker[Session], tmp_path: Path) -> Iterator[str]:
    client = redis.Redis.from_url(API_REDIS_URL)
    client.flushdb()
    client.close()
    env = {
        **os.environ,
        "DATABASE_URL": pg_url,
        "BROKER_URL": API_REDIS_URL,
        "PORT": str(free_port()),
    }
    token = subprocess.run(
        [*CLI, "api-key", "create", "--org", "org_contract"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    log = tmp_path / "api.log"
    with log.open("w") as out:
        process = subprocess.Popen([*CLI, "api"], env=env, stdout=out, stderr=out)
    base = f"http://127.0.0.1:{env['PORT']}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield f"{base} {token}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
def client(api: str) -> Iterator[ContractClient]:
    base, token = api.split(" ")
    c = ContractClient(base, token)
    yield c
    c.http.close()


def _more_than(items: list[str], n: int) -> Callable[[], bool]:
    return lambda: len(items) > n


def test_cursor_pages_are_stable_while_another_thread_creates(client: ContractClient) -> None:
    before = [client.create(new(reason=f"r{i}")).json()["id"] for i in range(23)]
    stop = threading.Event()
    created_meanwhile: list[str] = []
    grew = threading.Condition()

    def keep_creating() -> None:
        # A client of its own: httpx clients are not shared across threads here.
        other = ContractClient(str(client.http.base_url), "")
        other.http.headers["Authorization"] = client.http.headers["Authorization"]
        while not stop.is_set():
            r = other.create(new(reason="meanwhile"))
            assert r.status_code == 201, r.text
            with grew:
                created_meanwhile.append(r.json()["id"])
                grew.notify_all()
        other.http.close()

    creator = threading.Thread(target=keep_creating)
    creator.start()
    seen: list[str] = []
    cursor = None
    try:
        while True:
            body = client.page(cursor, limit=4)
            seen += [c["id"] for c in body["callbacks"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
            # At least one insert between every two pages (not a sleep: a wait for it).
            with grew:
                assert grew.wait_for(_more_than(created_meanwhile, len(created_meanwhile)), 10)
    finally:
        stop.set()
        creator.join()
    assert created_meanwhile, "the other thread created nothing while paging"
    assert len(seen) == len(set(seen)), "a row was repeated"
    assert [i for i in seen if i in set(before)] == list(reversed(before)), "a row was skipped"
    # A filtered walk by number and scheduled range, and a foreign cursor is refused.
    mine = client.create(new(to_number="+12015550999")).json()
    body = client.page(to_number="+12015550999", scheduled_after=_when(0), limit=1)
    assert [c["id"] for c in body["callbacks"]] == [mine["id"]]
    r = client.http.get("/v1/callbacks", params={"cursor": "not-a-cursor"})
    envelope(r, 400, "VALIDATION_ERROR")
    r = client.http.get("/v1/callbacks", params={"scheduled_after": "2026-03-02T12:00:00"})
    envelope(r, 400, "VALIDATION_ERROR")


def test_create_with_an_idempotency_key(client: ContractClient) -> None:
    first = client.create(new(reason="asked"), key="pipeline-42")
    assert first.status_code == 201, first.text
    assert first.json()["status"] == "scheduled"
    assert first.json()["organization_id"] == "org_contract"
    again = client.create({**new(reason="asked"), "scheduled_at": first.json()["scheduled_at"]},
                          key="pipeline-42")  # fmt: skip
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    envelope(client.create(new(reason="other"), key="pipeline-42"), 409, "CONFLICT")
    envelope(client.create(new(to_number="12015550123")), 400, "VALIDATION_ERROR")
    envelope(client.create(new(organization_id="org_other")), 400, "VALIDATION_ERROR")


def test_change_only_while_scheduled(client: ContractClient) -> None:
    cb = client.create(new(reason="first")).json()
    later = _when(days=2)
    r = client.change(cb["id"], {"scheduled_at": later, "reason": "moved", "metadata": {"a": 1}})
    assert r.status_code == 200, r.text
    got = r.json()
    assert (got["reason"], got["metadata"], got["status"]) == ("moved", {"a": 1}, "scheduled")
    assert datetime.fromisoformat(got["scheduled_at"]) == datetime.fromisoformat(later)
    assert client.get(cb["id"]).json() == got
    assert client.cancel(cb["id"]).json()["status"] == "cancelled"
    r = client.change(cb["id"], {"reason": "too late"})
    envelope(r, 409, "CONFLICT")
    assert "cancelled" in r.json()["error"]
    envelope(client.change("cb_does_not_exist", {"reason": "x"}), 404, "NOT_FOUND")
    envelope(client.change(cb["id"], {"status": "scheduled"}), 400, "VALIDATION_ERROR")
