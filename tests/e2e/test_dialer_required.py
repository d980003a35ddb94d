"""Issue 11, item 1: with PostgreSQL and no SPEKO_API_URL, the worker and beat refuse to
start (naming SPEKO_API_URL) instead of marking every callback dispatched with no call."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.processes import command, service_env

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("process", ["worker", "beat"])
def test_worker_and_beat_without_a_provider_refuse_to_start(
    pg_url: str, redis_url: str, tmp_path: Path, process: str
) -> None:
    env = service_env(DATABASE_URL=pg_url, BROKER_URL=redis_url, DATA_DIR=str(tmp_path))
    done = subprocess.run(
        command("celery", "-A", "worker", process),
        cwd=tmp_path, env=env, capture_output=True, timeout=120,
    )  # fmt: skip
    output = (done.stdout + done.stderr).decode()
    assert done.returncode != 0, output
    assert "SPEKO_API_URL: not set" in output
    assert "DIALER=log" in output
    assert "Traceback" not in output
