"""Fairness: one organization's 50,000 due callbacks do not delay another's single one,
and the poll stays cheap with that backlog (PostgreSQL, EXPLAIN ANALYZE printed)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import psycopg
from freezegun import freeze_time
from sqlalchemy import bindparam, text
from sqlalchemy.orm import Session, sessionmaker

from tests.support.factories import make_callback
from worker.backpressure import ClaimWindow
from worker.claims import claim_due
from worker.clock import SystemClock
from worker.db.types import UTCDateTime
from worker.pacing import fairness
from worker.pacing.limits import UNLIMITED, Pacing
from worker.policy import DispatchPolicy
from worker.poller import PollLimits, poll

NOW = datetime(2026, 1, 15, 18, 0, tzinfo=UTC)  # 13:00 in New York: inside the window
BACKLOG = 50_000


def _backlog(sessions: sessionmaker[Session], org: str, n: int) -> None:
    with sessions.begin() as s:
        s.execute(
            text(
                """
                INSERT INTO callbacks (id, organization_id, to_number, scheduled_at, due_at,
                    status, pipeline_config, metadata, created_at, updated_at, attempts,
                    attempt_in_flight, dispatch_round)
                SELECT 'cb_bulk_' || g, :org, '+12015551234',
                       :t - make_interval(secs => g), :t - make_interval(secs => g),
                       'scheduled', '{}', '{}', :t, :t, 0, false, 1
                FROM generate_series(1, :n) AS g
                """
            ),
            {"org": org, "n": n, "t": NOW - timedelta(hours=1)},
        )
    with sessions.begin() as s:
        s.execute(text("ANALYZE callbacks"))


def test_single_callback_of_org_b_is_claimed_in_the_first_poll_despite_org_a_backlog(
    pg_sessions: sessionmaker[Session],
) -> None:
    _backlog(pg_sessions, "org_a", BACKLOG)
    with pg_sessions.begin() as s:
        b = make_callback(s, org="org_b", scheduled_at=NOW - timedelta(seconds=1))
    published: list[list[str]] = []

    def publish(ids: Sequence[str]) -> None:
        published.append(list(ids))

    policy = DispatchPolicy(pacing=Pacing(max_concurrent=100))
    with freeze_time(NOW, tick=True):  # tick: so perf_counter measures
        began = time.perf_counter()
        poll(pg_sessions, SystemClock(), publish, limits=PollLimits(100, 2_000), policy=policy)
        tick = time.perf_counter() - began
    assert published, "the poll claimed something"
    assert b.id in published[0], "org_b's one callback is in the very first batch"
    # org_a is capped at 100 in flight; org_b took its share without waiting behind it
    assert sum(len(p) for p in published) == 101
    print(
        f"\nfairness: org_b claimed in batch 1 of poll 1; tick with {BACKLOG} backlog {tick:.3f}s"
    )


def test_poll_cost_with_a_50k_backlog(pg_sessions: sessionmaker[Session]) -> None:
    _backlog(pg_sessions, "org_a", BACKLOG)
    with pg_sessions.begin() as s:
        make_callback(s, org="org_b", scheduled_at=NOW - timedelta(seconds=1))
        for i in range(20):
            make_callback(s, org=f"org_x{i}", scheduled_at=NOW + timedelta(days=1))
    explain = text("EXPLAIN (ANALYZE, BUFFERS) " + fairness._PG).bindparams(
        bindparam("now", NOW, type_=UTCDateTime()),
        batch=100,
        big=UNLIMITED,
        conc=100,
        per_number=0,
        rate=0,
    )
    with pg_sessions.begin() as s:
        lines = list(s.execute(explain).scalars())
    print("\n" + "\n".join(lines))
    # The plan's shape, not its timing (figures are printed, never asserted): no full scan
    # of callbacks, and no JIT (our connections turn it off; it cost ~1 s here).
    assert not any("Seq Scan on callbacks" in ln for ln in lines), "\n".join(lines)
    assert not any(ln.startswith("JIT:") for ln in lines), "\n".join(lines)
    with freeze_time(NOW, tick=True), pg_sessions.begin() as s:
        began = time.perf_counter()
        ids = claim_due(s, now=NOW, batch_size=100, lease=timedelta(minutes=5))
        took = time.perf_counter() - began
    assert len(ids) == 100
    print(f"claim of 100 with {BACKLOG} backlog: {took * 1000:.1f} ms")


def test_the_claim_as_it_runs_reads_callbacks_only_through_indexes(
    pg_sessions: sessionmaker[Session],
) -> None:
    """Every statement of a real claim (the window's count, the pick, the lock, the
    update), as planned in the claim's transaction (a generic plan): no full scan of
    callbacks. Planned for any batch size, the pick's rows were once joined by hashing
    the whole table and the window counted through no index, so a claim's cost grew with
    the backlog (tests/perf/bench_fairness: ~100 ms a claim at 100,000)."""
    _backlog(pg_sessions, "org_a", 20_000)
    window = ClaimWindow(10_000)
    plans: list[str] = []
    for n in range(3):
        with freeze_time(NOW), pg_sessions.begin() as s:
            connection = s.connection().connection.driver_connection
            assert isinstance(connection, psycopg.Connection)

            def keep(notice: psycopg.errors.Diagnostic) -> None:
                plans.append(notice.message_primary or "")

            connection.add_notice_handler(keep)
            s.execute(text("LOAD 'auto_explain'"))
            s.execute(text("SET LOCAL auto_explain.log_min_duration = 0"))
            s.execute(text("SET LOCAL auto_explain.log_nested_statements = on"))
            s.execute(text("SET LOCAL auto_explain.log_level = notice"))
            ids = claim_due(s, now=NOW, batch_size=100, lease=timedelta(minutes=5), window=window)
            connection.remove_notice_handler(keep)
        assert len(ids) == 100, n
    claims = [p for p in plans if "FOR UPDATE OF c SKIP LOCKED" in p]
    counts = [p for p in plans if "attempt_in_flight IS false" in p]
    assert len(claims) == 3, plans
    assert len(counts) == 3, plans
    for plan in claims + counts:
        assert "Seq Scan on callbacks" not in plan, plan
