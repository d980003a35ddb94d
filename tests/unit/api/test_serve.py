"""``callbacks api``'s server processes: how many, and logging that reaches each of them."""

from __future__ import annotations

import logging.config
import os

import pytest

from worker.cli.api_commands import MAX_DEFAULT_WORKERS, default_workers, log_config, usable_cores


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


def test_log_config_sends_our_records_to_stderr_at_the_level(
    capsys: pytest.CaptureFixture[str],
) -> None:
    loggers = [logging.getLogger(n) for n in ("", "uvicorn", "uvicorn.error", "uvicorn.access")]
    saved = [(lg, lg.handlers[:], lg.level, lg.propagate) for lg in loggers]
    try:
        logging.config.dictConfig(log_config("WARNING"))
        logging.getLogger("worker.api.errors").warning("answering 503")
        logging.getLogger("worker.admin").info("not at WARNING")
    finally:
        for lg, handlers, level, propagate in saved:
            lg.handlers, lg.level, lg.propagate = handlers, level, propagate
    err = capsys.readouterr().err
    assert "WARNING worker.api.errors: answering 503" in err
    assert "not at WARNING" not in err
