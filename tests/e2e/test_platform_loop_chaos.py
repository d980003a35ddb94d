"""Issue 14's "done when", short form (the full size: ``python -m tests.chaos.platform_loop``):
signed reports (each twice, shuffled) -> callbacks -> dialed by a real worker, which is
SIGKILLed mid-run -> the stand-in pushes each call's outcome itself (half dropped, so
pulled) -> redials per policy. Every callback dispatched once, with its number's outcome,
and exactly the redials the policy asks for."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.chaos.platform_loop import LoopConfig, run_loop

pytestmark = pytest.mark.e2e


def test_reports_to_callbacks_to_outcomes_to_redials_through_a_worker_sigkill(
    pg_url: str, pg_sessions: sessionmaker[Session], redis_url: str, tmp_path: Path
) -> None:
    report = run_loop(LoopConfig(callbacks=150, kills=1, timeout=420), pg_url, redis_url, tmp_path)
    print(report.render())
    assert report.problems == []
    assert report.kills == 1
    assert report.callbacks == report.expected == 150 + 2 * 60  # 40 % redialed twice
    assert report.placed == report.callbacks
    assert report.provider_duplicates == 0
    assert report.pushes_dropped > 0  # the pull path ran
    assert report.pushes_sent > 0  # and the push path
