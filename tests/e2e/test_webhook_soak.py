"""Issue 15's soak, short form (the full size: ``python -m tests.chaos.webhook_soak``):
a healthy endpoint alone, then beside one that is down, one answering 500 and one taking
20 s, with both workers SIGKILLed mid-run in each phase. Every event arrives at the
healthy one, once after deduplication, in order per callback, none invented."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.webhook_soak import SoakConfig, run_soak
from tests.e2e.conftest import OwnDatabase

pytestmark = pytest.mark.e2e


def test_the_healthy_endpoint_gets_everything_beside_dead_broken_and_slow_ones(
    own_db: OwnDatabase, redis_url: str, tmp_path: Path
) -> None:
    config = SoakConfig(callbacks=150, spread=10, timeout=400)
    report = run_soak(config, own_db.url, redis_url, tmp_path)
    print(report.render())
    alone, beside = report.phases
    assert alone.problems == []
    assert beside.problems == []
    assert alone.events == beside.events == 300
    assert alone.kills == beside.kills == 2
    assert beside.bad_requests["500"] > 0  # the bad endpoints were tried
    assert beside.bad_requests["20 s"] > 0


def test_one_flaky_receiver_gets_everything_once_in_order_also_beside_a_dead_endpoint(
    own_db: OwnDatabase, redis_url: str, tmp_path: Path
) -> None:
    """Issue 15's done-when, short: the receiver is down for the first 3 s (the full form:
    a minute, ``--scenario flaky``), then answers 500 to the first arrival of every 10th
    event and takes 20 s over every 40th; alone, then beside an endpoint dead throughout."""
    config = SoakConfig(callbacks=150, spread=10, timeout=400, scenario="flaky", down_for=3)
    report = run_soak(config, own_db.url, redis_url, tmp_path)
    print(report.render())
    alone, beside = report.phases
    assert alone.problems == []
    assert beside.problems == []
    assert alone.events == beside.events == 300
    assert alone.kills == beside.kills == 2
    for phase in (alone, beside):
        assert phase.answered["500"] > 0  # it did misbehave once up
        assert phase.answered["20 s"] > 0
        assert phase.requests > phase.events  # and the failed ones came again
