"""No value from a request can start a new log line, in either log format."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from worker.logs import SERVER_LOGGERS, configure_logging
from worker.settings import Settings

FORGED = "/v1/callbacks/x\n2026-03-02 12:00:00 INFO worker.admin: callback cb_forged cancelled"
SNEAKY = "a\rb\x1b[2Kc\x85d\u2028e\u2029f\x00g"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    servers = {
        n: (logging.getLogger(n).handlers[:], logging.getLogger(n).propagate)
        for n in SERVER_LOGGERS
    }
    yield
    root.handlers, root.level = saved[0], saved[1]
    for name, (handlers, propagate) in servers.items():
        logging.getLogger(name).handlers = handlers
        logging.getLogger(name).propagate = propagate


def _lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [line for line in capsys.readouterr().err.split("\n") if line]


@pytest.mark.usefixtures("restore_logging")
def test_console_lines_escape_control_characters(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(Settings(log_format="console"))
    log = logging.getLogger("worker.api.errors")
    log.warning("unhandled error on POST %s", FORGED)
    log.warning("odd %s", SNEAKY, extra={"path": FORGED})
    lines = _lines(capsys)
    assert len(lines) == 2, lines
    assert "x\\n2026-03-02" in lines[0]
    assert all(ch not in "".join(lines) for ch in "\r\x1b\x85\u2028\u2029\x00")
    assert "\\r" in lines[1]
    assert "\\x1b" in lines[1]
    assert "\\u2028" in lines[1]


@pytest.mark.usefixtures("restore_logging")
def test_console_tracebacks_cannot_pass_for_a_log_line(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(Settings(log_format="console", log_level="DEBUG"))
    try:
        raise ValueError(FORGED)
    except ValueError:
        logging.getLogger("worker").exception("failed")
    first, *rest = _lines(capsys)
    assert "failed" in first
    assert rest
    assert all(line.startswith("    ") for line in rest)


@pytest.mark.usefixtures("restore_logging")
def test_json_lines_stay_one_object_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(Settings(log_format="json"))
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d', "c", "GET", FORGED, "1.1", 404
    )
    logging.getLogger("worker").info("odd %s", SNEAKY)
    lines = _lines(capsys)
    assert len(lines) == 2
    events = [json.loads(line)["event"] for line in lines]
    assert FORGED in events[0]
    assert events[1] == f"odd {SNEAKY}"


@pytest.mark.usefixtures("restore_logging")
def test_uvicorn_loggers_go_through_the_same_handler(capsys: pytest.CaptureFixture[str]) -> None:
    uvicorn_access = logging.getLogger("uvicorn.access")
    uvicorn_access.handlers = [logging.StreamHandler()]
    uvicorn_access.propagate = False
    configure_logging(Settings(log_format="json"))
    uvicorn_access.info("hello")
    (line,) = _lines(capsys)
    assert json.loads(line)["logger"] == "uvicorn.access"
