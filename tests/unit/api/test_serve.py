"""``callbacks api``'s server processes: how many (their logging: test_api_process_logs)."""

from __future__ import annotations

import os

import pytest

from worker.cli.api_commands import MAX_DEFAULT_WORKERS, default_workers, usable_cores


def test_web_concurrency_decides_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    assert default_workers(embedded=False) == 3
    assert default_workers(embedded=True) == 3


@pytest.mark.parametrize("value", ["", "0", "many"])
def test_otherwise_one_per_core_and_one_when_embedded(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("WEB_CONCURRENCY", value)
    assert 1 <= usable_cores() <= (os.cpu_count() or 1)
    assert default_workers(embedded=False) == max(1, min(usable_cores(), MAX_DEFAULT_WORKERS))
    assert default_workers(embedded=True) == 1
