"""``callbacks api`` as a real process on PostgreSQL + Redis, with a real Celery worker:
key from the CLI, callbacks from the CLI, then the whole HTTP surface end to end."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy.orm import Session, sessionmaker

from tests.support.databases import REDIS_URL
from tests.support.provider import Provider

pytestmark = pytest.mark.e2e
TO = "+12015550199"
CLI = [sys.executable, "-m", "worker.cli.main"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# Its own Redis database, so no Celery worker of another test or run takes its messages.
API_REDIS_URL = os.environ.get("TEST_API_REDIS_URL", REDIS_URL.rsplit("/", 1)[0] + "/12")


@pytest.fixture
def env(pg_url: str, pg_sessions: sessionmaker[Session], provider: Provider) -> dict[str, str]:
    client = redis.Redis.from_url(API_REDIS_URL)
    client.flushdb()
    client.close()
    return {
        **os.environ,
        "DATABASE_URL": pg_url,
        "BROKER_URL": API_REDIS_URL,
        "SPEKO_API_URL": provider.url,
        "SPEKO_API_KEY": provider.api_key,
        "PORT": str(free_port()),
        "LOG_LEVEL": "INFO",
        # Runs in real time at any hour: an all-day calling window keeps the dispatch from
        # being deferred to the callee's morning (windows are tested with a frozen clock).
        "CALLING_WINDOW_START": "00:00",
        "CALLING_WINDOW_END": "24:00",
    }


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, check=True)
    return done.stdout


@pytest.fixture
def processes(env: dict[str, str], tmp_path: Path) -> Iterator[dict[str, Path]]:
    logs = {"api": tmp_path / "api.log", "worker": tmp_path / "worker.log"}
    commands = {
        "api": [*CLI, "api"],
        "worker": [sys.executable, "-m", "celery", "-A", "worker", "worker", "-c", "2"],
    }
    running = []
    for name, command in commands.items():
        with logs[name].open("w") as out:
            running.append(subprocess.Popen(command, env=env, stdout=out, stderr=out))
    try:
        yield logs
    finally:
        for p in running:
            p.terminate()
        for p in running:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


def wait_for(predicate: Any, what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except httpx.TransportError:
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_api_process_end_to_end(
    env: dict[str, str], processes: dict[str, Path], provider: Provider
) -> None:
    token = cli(env, "api-key", "create", "--org", "org_e2e").strip()
    at = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    ids = [
        cli(env, "schedule", "--org", "org_e2e", "--to", TO, "--at", at, "--source-session", s)
        for s in ("sess_1", "sess_2")
    ]
    first, second = (json.loads(line)["id"] for line in ids)

    base = f"http://127.0.0.1:{env['PORT']}"
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    with httpx.Client(base_url=base, timeout=10) as http:
        wait_for(lambda: http.get("/readyz").status_code == 200, "the api to be ready")

        listed = http.get("/v1/callbacks", headers=auth).json()["callbacks"]
        assert [c["id"] for c in listed] == [second, first]
        assert http.get("/v1/callbacks?source_session_id=sess_1", headers=auth).json()[
            "callbacks"
        ] == [listed[1]]
        assert http.get(f"/v1/callbacks/{first}", headers=auth).json() == listed[1]
        assert http.get("/v1/callbacks?limit=0", headers=auth).json()["code"] == (
            "VALIDATION_ERROR"
        )
        r = http.get("/v1/callbacks")
        assert (r.status_code, r.headers["www-authenticate"]) == (401, "Bearer")
        assert http.get("/openapi.json").json()["paths"]["/v1/callbacks"]["get"]["operationId"] == (
            "listScheduledCallbacks"
        )

        r = http.post(f"/v1/callbacks/{first}/cancel", headers=auth, json={"reason": "asked"})
        assert (r.status_code, r.json()["status"]) == (200, "cancelled")
        r = http.post(f"/v1/callbacks/{first}/dispatch", headers=auth, json={})
        assert (r.status_code, r.json()["code"]) == (409, "CONFLICT")

        r = http.post(f"/v1/callbacks/{second}/dispatch", headers=auth, json={})
        assert (r.status_code, r.json()["status"]) == (200, "dispatching")
        placed = wait_for(
            lambda: (
                http.get(f"/v1/callbacks/{second}", headers=auth).json()["status"] == "dispatched"
            ),
            "the worker to place the call",
        )
        assert placed
        r = http.post(f"/v1/callbacks/{second}/cancel", headers=auth, json={})
        assert (r.status_code, "dispatched" in r.json()["error"]) == (409, True)

    assert [r.body["metadata"]["callback_id"] for r in provider.requests] == [second]
    history = cli(env, "history", first, "--json")
    assert "api:key_" in history
    assert '"reason": "asked"' in history
    api_log = processes["api"].read_text()
    assert "Traceback" not in api_log
    assert TO not in api_log
    assert "*0199" in api_log
