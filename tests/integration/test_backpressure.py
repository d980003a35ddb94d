"""Backpressure (issue 13): the poller keeps claims not yet started under the window."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime, timedelta

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session, sessionmaker

from tests.support.factories import T0, make_callback
from worker import lifecycle
from worker.actions import dispatch_now
from worker.backpressure import ClaimWindow, unstarted, waiting
from worker.claims import CLAIM_LOCK
from worker.db.models import Callback
from worker.dialer.log import LogDialer
from worker.dispatch import Dispatcher, dispatch, start_attempts
from worker.metrics import StateCollector
from worker.outcomes import Result
from worker.policy import DispatchPolicy
from worker.poller import PollLimits, poll
from worker.reaper import reap
from worker.report import render, status_report
from worker.status import Status

POLICY = DispatchPolicy(claim_lease=timedelta(minutes=5), lateness=None)
NOW = T0 + timedelta(minutes=1)
WINDOW = ClaimWindow(size=40, stale=timedelta(seconds=30), top_up=10)
LIMITS = PollLimits(batch_size=7, max_per_tick=1_000, window=WINDOW)


class FixedClock:
    def __init__(self, now: datetime) -> None:
        self.at = now

    def now(self) -> datetime:
        return self.at


class Published:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ids: list[str] = []

    def __call__(self, ids: Sequence[str]) -> None:
        with self.lock:
            self.ids.extend(ids)


def _due(sessions: sessionmaker[Session], n: int, org: str = "org_big") -> None:
    """``n`` callbacks of ``org``, all due before T0 (one INSERT: the counts matter here)."""
    rows = [
        {
            "id": f"cb_{org}_{i:05d}",
            "organization_id": org,
            "to_number": "+12015551234",
            "scheduled_at": T0 - timedelta(seconds=n - i),
            "due_at": T0 - timedelta(seconds=n - i),
            "status": Status.SCHEDULED,
            "pipeline_config": {},
            "metadata_": {},
            "created_at": T0 - timedelta(hours=1),
            "updated_at": T0 - timedelta(hours=1),
            "attempts": 0,
            "attempt_in_flight": False,
            "dispatch_round": 1,
        }
        for i in range(n)
    ]
    with sessions.begin() as s:
        s.execute(insert(Callback), rows)


def _unstarted(sessions: sessionmaker[Session]) -> int:
    with sessions() as s:
        return unstarted(s).count


def _count(sessions: sessionmaker[Session], status: Status) -> int:
    with sessions() as s:
        return int(s.scalar(select(func.count()).where(Callback.status == status)) or 0)


def _start(sessions: sessionmaker[Session], ids: Sequence[str], at: datetime) -> None:
    """What a worker does first with a message: start the attempts (they leave the window)."""
    with sessions.begin() as s:
        lifecycle.start_attempts(s, ids, now=at, lease=timedelta(minutes=2), actor="worker")


def test_a_tick_claims_no_more_than_the_window(sessions: sessionmaker[Session]) -> None:
    _due(sessions, 100)
    published = Published()
    assert poll(sessions, FixedClock(NOW), published, limits=LIMITS, policy=POLICY) == 40
    assert len(published.ids) == 40
    assert _unstarted(sessions) == 40
    # Full: the next tick claims nothing until workers start some.
    assert poll(sessions, FixedClock(NOW), published, limits=LIMITS, policy=POLICY) == 0
    _start(sessions, published.ids[:15], NOW)
    assert poll(sessions, FixedClock(NOW), published, limits=LIMITS, policy=POLICY) == 15
    assert _unstarted(sessions) == 40


def test_a_tick_ends_at_its_first_claim_cut_short(sessions: sessionmaker[Session]) -> None:
    """A tick does not chase the room as workers open it, claim after claim with the `now`
    it began with: the workers' top-ups (each with a fresh `now`) take that room."""
    _due(sessions, 200)
    sizes: list[int] = []

    def publish_and_start_most(ids: Sequence[str]) -> None:
        # Workers start all but two of each message at once: room shrinks by 2 a claim.
        sizes.append(len(ids))
        _start(sessions, list(ids[2:]), NOW)

    poll(sessions, FixedClock(NOW), publish_and_start_most, limits=LIMITS, policy=POLICY)
    # 17 full claims (room 40 -> 6), then one of 6 cut short by the window: the tick ends
    # there, instead of claiming 2 more once the workers had started 4 of those 6.
    assert sizes == [7] * 17 + [6]
    assert _unstarted(sessions) == 2 * 17 + 2


def test_without_a_window_a_tick_claims_up_to_its_cap(sessions: sessionmaker[Session]) -> None:
    _due(sessions, 100)
    limits = PollLimits(batch_size=7, max_per_tick=1_000)
    assert poll(sessions, FixedClock(NOW), Published(), limits=limits, policy=POLICY) == 100


def test_a_top_up_claims_only_for_a_full_message(sessions: sessionmaker[Session]) -> None:
    _due(sessions, 100)
    published = Published()
    poll(sessions, FixedClock(NOW), published, limits=LIMITS, policy=POLICY)
    _start(sessions, published.ids[:9], NOW)  # room 9 < top_up 10
    assert (
        poll(sessions, FixedClock(NOW), published, limits=LIMITS, policy=POLICY, top_up=True) == 0
    )
    _start(sessions, published.ids[9:10], NOW)  # room 10
    assert (
        poll(sessions, FixedClock(NOW), published, limits=LIMITS, policy=POLICY, top_up=True) == 10
    )
    # A tick takes any room at all.
    _start(sessions, published.ids[10:11], NOW)
    assert poll(sessions, FixedClock(NOW), published, limits=LIMITS, policy=POLICY) == 1


def test_the_window_holds_under_concurrent_pollers(pg_sessions: sessionmaker[Session]) -> None:
    """Beats and workers topping up poll at once; the room is counted after the claim
    lock, so together they never claim past the window, while workers keep starting."""
    _due(pg_sessions, 600)
    published = Published()
    worst: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def poller(top_up: bool) -> None:
        try:
            barrier.wait()
            for _ in range(15):
                poll(
                    pg_sessions,
                    FixedClock(NOW),
                    published,
                    limits=LIMITS,
                    policy=POLICY,
                    top_up=top_up,
                )
                worst.append(_unstarted(pg_sessions))
        except BaseException as exc:
            errors.append(exc)

    def worker() -> None:
        try:
            barrier.wait()
            for _ in range(40):
                with published.lock:
                    take = published.ids[:5]
                    del published.ids[:5]
                if take:
                    _start(pg_sessions, take, NOW)
                worst.append(_unstarted(pg_sessions))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=poller, args=(i % 2 == 0,)) for i in range(6)]
    threads += [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert max(worst) <= WINDOW.size
    with pg_sessions() as s:
        assert waiting(s, now=NOW, stale=WINDOW.stale) <= WINDOW.size
        claimed = s.scalar(select(func.count()).where(Callback.status == Status.DISPATCHING))
    assert claimed is not None
    assert claimed > WINDOW.size  # the workers made room, and it was used


def test_a_dead_workers_claims_stop_counting_and_come_back_through_the_reaper(
    sessions: sessionmaker[Session],
) -> None:
    _due(sessions, 100)
    clock = FixedClock(NOW)
    first = Published()
    assert poll(sessions, clock, first, limits=LIMITS, policy=POLICY) == 40
    # Their messages are lost (the worker holding them died): nothing starts them.
    clock.at = NOW + timedelta(seconds=10)
    assert poll(sessions, clock, Published(), limits=LIMITS, policy=POLICY) == 0
    # Past the window's staleness they no longer hold its room: the drain goes on.
    clock.at = NOW + WINDOW.stale + timedelta(seconds=1)
    second = Published()
    assert poll(sessions, clock, second, limits=LIMITS, policy=POLICY) == 40
    assert not set(first.ids) & set(second.ids)
    # And past the claim lease the reaper hands them back, due, to be claimed again.
    clock.at = NOW + POLICY.claim_lease + timedelta(seconds=1)
    reaped = reap(sessions, clock, Published(), POLICY)
    assert set(reaped.requeued) == set(first.ids)
    third = Published()
    assert poll(sessions, clock, third, limits=LIMITS, policy=POLICY) == 40
    assert set(third.ids) == set(first.ids)  # the oldest due again, first in line


def test_a_failed_publish_releases_its_claims_and_the_room(sessions: sessionmaker[Session]) -> None:
    _due(sessions, 100)

    def broken(ids: Sequence[str]) -> None:
        raise ConnectionError("broker unreachable")

    with pytest.raises(ConnectionError):
        poll(sessions, FixedClock(NOW), broken, limits=LIMITS, policy=POLICY)
    assert _unstarted(sessions) == 0
    assert _count(sessions, Status.SCHEDULED) == 100
    # The room is free again: the next tick claims a full window.
    assert poll(sessions, FixedClock(NOW), Published(), limits=LIMITS, policy=POLICY) == 40


def test_a_manual_dispatch_goes_beside_a_full_window(pg_sessions: sessionmaker[Session]) -> None:
    """An operator's dispatch (API or callbacks.dispatch) is not held by the window."""
    _due(pg_sessions, 100)
    clock = FixedClock(NOW)
    assert poll(pg_sessions, clock, Published(), limits=LIMITS, policy=POLICY) == 40
    with pg_sessions.begin() as s:
        api_id = make_callback(s, org="org_small", scheduled_at=NOW + timedelta(hours=3)).id
        task_id = make_callback(s, org="org_small", scheduled_at=NOW + timedelta(hours=3)).id
    sent: list[str] = []
    cb = dispatch_now(
        pg_sessions,
        clock,
        sent.append,
        "org_small",
        api_id,
        actor="api:key_1",
        lease=POLICY.claim_lease,
    )
    assert cb.status is Status.DISPATCHING
    assert sent == [api_id]
    d = Dispatcher(pg_sessions, clock, LogDialer(), POLICY)
    assert dispatch(d, api_id, manual=False) is Result.DISPATCHED
    assert dispatch(d, task_id, manual=True, actor="manual") is Result.DISPATCHED
    assert _unstarted(pg_sessions) == 40  # the window's claims are still there, untouched


def test_status_and_metrics_show_the_claims_not_started_and_their_wait(
    sessions: sessionmaker[Session],
) -> None:
    _due(sessions, 10)
    published = Published()
    poll(sessions, FixedClock(NOW), published, limits=LIMITS, policy=POLICY)
    _start(sessions, published.ids[:4], NOW + timedelta(seconds=2))
    _start(sessions, published.ids[4:6], NOW + timedelta(seconds=6))
    at = NOW + timedelta(seconds=8)
    with sessions() as s:
        report = status_report(s, at)
    assert report["claimed_not_started"] == 4
    assert report["claimed_oldest_wait_seconds"] == 8.0
    assert report["claim_wait_last_5_min"] == {
        "attempts": 6,
        "p50_seconds": 2.0,
        "p99_seconds": 6.0,
    }
    text = render(report)
    assert "claimed, not started: 4, oldest waiting 8 s" in text
    assert "claim to start in the last 5 min: p50 2.00 s, p99 6.00 s (6 attempts)" in text
    collected = StateCollector(sessions, FixedClock(at)).collect()
    gauges = {m.name: m.samples[0].value for m in collected if m.samples}
    assert gauges["callbacks_claimed_not_started"] == 4
    assert gauges["callbacks_claimed_oldest_wait_seconds"] == 8.0


def test_each_attempt_start_observes_its_claim_wait(sessions: sessionmaker[Session]) -> None:
    _due(sessions, 3)
    published = Published()
    poll(sessions, FixedClock(NOW), published, limits=LIMITS, policy=POLICY)
    before = REGISTRY.get_sample_value("callbacks_claim_wait_seconds_count") or 0.0
    in_bucket = REGISTRY.get_sample_value("callbacks_claim_wait_seconds_bucket", {"le": "5.0"})
    d = Dispatcher(sessions, FixedClock(NOW + timedelta(seconds=3)), LogDialer(), POLICY)
    start_attempts(d, published.ids, "worker")
    assert REGISTRY.get_sample_value("callbacks_claim_wait_seconds_count") == before + 3
    assert (
        REGISTRY.get_sample_value("callbacks_claim_wait_seconds_bucket", {"le": "5.0"})
        == (in_bucket or 0.0) + 3
    )


def test_a_top_up_never_waits_behind_another_claim(pg_sessions: sessionmaker[Session]) -> None:
    """A worker's top-up only tries the claim lock: while another claim holds it, the top-up
    claims nothing at once (its thread goes back to dialing), and claims once it is free."""
    _due(pg_sessions, 100)
    with pg_sessions.begin() as holder:
        holder.execute(select(func.pg_advisory_xact_lock(CLAIM_LOCK)))
        topped = poll(
            pg_sessions, FixedClock(NOW), Published(), limits=LIMITS, policy=POLICY, top_up=True
        )
        assert topped == 0
    again = poll(
        pg_sessions, FixedClock(NOW), Published(), limits=LIMITS, policy=POLICY, top_up=True
    )
    assert again == 40
