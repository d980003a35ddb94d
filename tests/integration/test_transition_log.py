"""Transition log lines say what happened: a write that keeps the status is an event."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.support.factories import T0, make_callback
from worker import lifecycle
from worker.status import Status


def test_an_attempt_starting_is_logged_as_such_not_as_a_move_to_the_same_status(
    sqlite_sessions: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    with sqlite_sessions.begin() as s:
        cb = make_callback(s, Status.DISPATCHING)
        caplog.set_level(logging.INFO, logger="worker.lifecycle")
        started = lifecycle.start_attempts(
            s, [cb.id], now=T0, lease=timedelta(minutes=2), actor="worker"
        )
    assert [c.id for c in started] == [cb.id]
    assert caplog.messages == [f"1 callback: attempt started (dispatching) by worker ({cb.id})"]
    assert "dispatching -> dispatching" not in caplog.text
