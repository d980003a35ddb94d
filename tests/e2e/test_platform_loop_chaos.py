"""Issue 14's "done when", short form (the full size: ``python -m tests.chaos.platform_loop``):
signed reports (each twice, shuffled) -> callbacks -> dialed by a real worker, which is
SIGKILLed mid-run -> the stand-in pushes each call's outcome itself (half dropped, so
pulled) -> redials per policy. Every callback dispatched once, with its number's outcome,
and exactly the redials the policy asks for."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.platform_loop import LoopConfig, run_loop
from tests.e2e.conftest import OwnDatabase

pytestmark = pytest.mark.e2e


def test_reports_to_callbacks_to_outcomes_to_redials_through_a_worker_sigkill(
    own_db: OwnDatabase, redis_url: str, tmp_path: Path
) -> None:
    # A private PostgreSQL cluster (tests/e2e/conftest.py): this many processes and
    # connections stay off the shared server.
    config = LoopConfig(callbacks=150, kills=1, timeout=420)
    report = run_loop(config, own_db.url, redis_url, tmp_path)
    print(report.render())
    assert report.problems == []
    assert report.kills == 1
    assert report.callbacks == report.expected == 150 + 2 * 60  # 40 % redialed twice
    assert report.placed == report.callbacks
    assert report.provider_duplicates == 0
    assert report.pushes_dropped > 0  # the pull path ran
    assert report.pushes_sent > 0  # and the push path
