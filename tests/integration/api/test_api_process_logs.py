"""``callbacks api`` as a real process logs through the worker's structured logging:
in production one JSON object per line, uvicorn's access lines included, whatever the
request's path holds."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.integration.api.conftest import API_REDIS_URL

FORGED = "%0a2026-03-02%2012:00:00,000%20INFO%20worker.admin:%20callback%20cb_forged%20cancelled"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _serve_and_probe(env: dict[str, str], log: Path) -> None:
    port = _free_port()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker.cli.main", "api", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if http.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            for path in (
                f"/v1/callbacks/x{FORGED}",
                f"/nope{FORGED}",
                f"/v1/callbacks/x{FORGED}/cancel",
            ):
                assert http.get(path).status_code in (401, 404, 405)
            assert http.post(f"/v1/callbacks/cb_1{FORGED}/cancel").status_code in (401, 404)
            # HEAD through the real server (item 12): GET's status, no body.
            head = http.head("/healthz")
            assert (head.status_code, head.content) == (200, b"")
            assert http.head("/readyz").status_code == http.get("/readyz").status_code
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_production_api_logs_one_json_object_per_line(
    pg_url: str, pg_sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": pg_url,
        "BROKER_URL": API_REDIS_URL,
        "SPEKO_API_URL": "http://127.0.0.1:9",
        "SPEKO_API_KEY": "sk_test_unused",
        "LOG_LEVEL": "INFO",
    }
    env.pop("LOG_FORMAT", None)
    log = tmp_path / "api.log"
    _serve_and_probe(env, log)
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r}\n{log.read_text()}")
    access = [r for r in records if r.get("logger") == "uvicorn.access"]
    assert len(access) >= 5
    assert not any("cb_forged" in line and "\n" in line for line in lines)
    assert any(r.get("logger") == "uvicorn.error" for r in records)


def test_embedded_console_lines_cannot_be_forged(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_", "BROKER_", "SPEKO_", "LOG_FORMAT"))
    }
    env.update(DATA_DIR=str(tmp_path / "data"), LOG_LEVEL="INFO")
    subprocess.run(
        [sys.executable, "-m", "worker.cli.main", "migrate"],
        env=env,
        check=True,
        capture_output=True,
    )
    log = tmp_path / "api.log"
    _serve_and_probe(env, log)
    lines = log.read_text().splitlines()
    assert not [line for line in lines if line.startswith("2026-03-02 12:00:00")]
    assert any("uvicorn.access" in line for line in lines)
