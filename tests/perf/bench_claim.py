"""(b) Claim throughput and (e) the cost of an empty poll against table size and churn.

Claim: the poller's ``claim_due`` (ORM, one transaction per batch, history events) against
a raw SQL claim of the same rows in the same database (psycopg, the same
``FOR UPDATE SKIP LOCKED`` statement, no events); rows/s, the ratio per pair of runs.

Poll cost: ``claim_due`` finding nothing, in the poller's own transaction, with 10k, 1M
and 10M rows (bulk-loaded in SQL, 99% in final statuses, 1% scheduled for tomorrow);
ratio to the smallest. Then the churn cases on the smallest table: right after a drain of
``--churn`` callbacks (no vacuum yet), and the same while another session holds an open
``REPEATABLE READ`` snapshot taken before the drain.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from tests.perf.common import (
    Figure,
    Results,
    Stat,
    bench_database,
    fill_callbacks,
    load1,
    vacuum_analyze,
)
from worker.claims import claim_due
from worker.db.engine import make_sessions

LEASE = timedelta(minutes=5)

RAW_CLAIM = """
WITH due AS MATERIALIZED (
    SELECT id FROM callbacks
    WHERE status = 'scheduled' AND due_at <= %(now)s
    ORDER BY due_at LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
)
UPDATE callbacks AS c
SET status = 'dispatching', updated_at = %(now)s, lease_expires_at = %(lease)s,
    attempt_in_flight = false
FROM due WHERE c.id = due.id
RETURNING c.id
"""


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def claim_all_ours(sessions: sessionmaker[Session], batch: int) -> int:
    total = 0
    while True:
        with sessions.begin() as session:
            ids = claim_due(session, now=datetime.now(UTC), batch_size=batch, lease=LEASE)
        total += len(ids)
        if len(ids) < batch:
            return total


def claim_all_raw(url: str, batch: int) -> int:
    total = 0
    with psycopg.connect(_libpq(url)) as conn:
        while True:
            now = datetime.now(UTC)
            with conn.transaction():
                rows = conn.execute(
                    RAW_CLAIM, {"now": now, "batch": batch, "lease": now + LEASE}
                ).fetchall()
            total += len(rows)
            if len(rows) < batch:
                return total


def unclaim(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE callbacks SET status = 'scheduled', lease_expires_at = NULL "
                "WHERE status = 'dispatching'"
            )
        )
        conn.execute(text("DELETE FROM callback_events WHERE to_status = 'dispatching'"))
    vacuum_analyze(engine)
    vacuum_analyze(engine, "callback_events")


def run_claim(results: Results, *, rows: int, batch: int, runs: int) -> None:
    print(f"\n== claim: {rows:,} due rows, batches of {batch}", flush=True)
    with bench_database() as (url, engine):
        fill_callbacks(engine, rows)
        vacuum_analyze(engine)
        sessions = make_sessions(engine)
        ours: list[float] = []
        raw: list[float] = []
        before = load1()
        jobs: list[tuple[str, Callable[[], int], list[float]]] = [
            ("raw", lambda: claim_all_raw(url, batch), raw),
            ("ours", lambda: claim_all_ours(sessions, batch), ours),
        ]
        for _ in range(runs):
            for name, claim, into in jobs:
                began = time.perf_counter()
                claimed = claim()
                elapsed = time.perf_counter() - began
                assert claimed == rows, (name, claimed, rows)
                into.append(rows / elapsed)
                unclaim(engine)
        results.add(
            Figure(
                "claim",
                f"claim_due, {rows:,} rows, batch {batch}",
                "rows/s",
                Stat.of(ours),
                baseline=Stat.of(raw),
                baseline_name="raw SQL claim",
                ratio=Stat.of([o / r for o, r in zip(ours, raw, strict=True)]),
                target=">= 0.5x",
                load=(before, load1()),
                notes={"raw_writes_events": False, "ours_writes_events": True},
            )
        )


# --- poll cost -------------------------------------------------------------------------


def empty_polls(sessions: sessionmaker[Session], count: int) -> float:
    """Median milliseconds of ``count`` empty polls (each the poller's own transaction)."""
    samples = []
    for _ in range(count):
        began = time.perf_counter()
        with sessions.begin() as session:
            ids = claim_due(session, now=datetime.now(UTC), batch_size=100, lease=LEASE)
        samples.append((time.perf_counter() - began) * 1000)
        assert not ids, "the poll-cost table must have nothing due"
    return statistics.median(samples)


def poll_blocks(sessions: sessionmaker[Session], runs: int, polls: int) -> Stat:
    empty_polls(sessions, 20)  # warm caches and the connection pool
    return Stat.of([empty_polls(sessions, polls) for _ in range(runs)])


def explain_empty_poll(engine: Engine) -> str:
    with engine.connect() as conn:
        plan = conn.execute(
            text(
                "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT id FROM callbacks "
                "WHERE status = 'scheduled' AND due_at <= now() ORDER BY due_at LIMIT 100 "
                "FOR UPDATE SKIP LOCKED"
            )
        ).scalars()
        return "\n".join(plan)


def drain_in_sql(engine: Engine, sessions: sessionmaker[Session], count: int, first: int) -> None:
    """What a drain leaves behind: ``count`` due rows claimed, started, then dispatched."""
    fill_callbacks(engine, count, first=first, prefix="cb_churn_", events=False)
    claimed = claim_all_ours(sessions, 1000)
    assert claimed == count, (claimed, count)
    with engine.begin() as conn:
        # The worker's two writes per callback: start the attempt, record the outcome.
        conn.execute(
            text(
                "UPDATE callbacks SET attempt_in_flight = true, attempts = attempts + 1, "
                "attempted_at = now() WHERE status = 'dispatching'"
            )
        )
        conn.execute(
            text(
                "UPDATE callbacks SET status = 'dispatched', attempt_in_flight = false, "
                "dispatched_at = now(), lease_expires_at = NULL WHERE status = 'dispatching'"
            )
        )


def run_poll_cost(results: Results, *, sizes: list[int], churn: int, runs: int, polls: int) -> None:
    smallest: Stat | None = None
    for size in sorted(sizes):
        print(f"\n== empty poll: {size:,} rows", flush=True)
        with bench_database() as (_url, engine):
            began = time.monotonic()
            # 1% scheduled, all for tomorrow or later: nothing is due.
            fill_callbacks(
                engine,
                size,
                start_sql="now() + interval '1 day'",
                step_seconds=0.001,
                scheduled_per_mille=10,
                events=False,
            )
            vacuum_analyze(engine)
            print(f"   loaded {size:,} rows in {time.monotonic() - began:.0f}s", flush=True)
            sessions = make_sessions(engine)
            before = load1()
            stat = poll_blocks(sessions, runs, polls)
            smallest = smallest or stat
            results.add(
                Figure(
                    "poll",
                    f"empty poll, {size:,} rows",
                    "ms",
                    stat,
                    baseline=smallest,
                    baseline_name=f"{min(sizes):,} rows",
                    ratio=Stat.of([v / smallest.median for v in stat.runs]),
                    target="<= 1.5x at 10M",
                    load=(before, load1()),
                )
            )
            if size == min(sizes) and churn:
                run_churn(results, engine, sessions, stat, churn=churn, runs=runs, polls=polls)


def run_churn(
    results: Results,
    engine: Engine,
    sessions: sessionmaker[Session],
    base: Stat,
    *,
    churn: int,
    runs: int,
    polls: int,
) -> None:
    print(f"\n== empty poll after a {churn:,} drain", flush=True)
    drain_in_sql(engine, sessions, churn, first=10_000_000_000)
    before = load1()
    began = time.perf_counter()
    empty_polls(sessions, 1)
    first = (time.perf_counter() - began) * 1000
    stat = Stat.of([empty_polls(sessions, polls) for _ in range(runs)])
    results.add(
        Figure(
            "poll",
            f"empty poll right after a {churn:,} drain, no vacuum",
            "ms",
            stat,
            baseline=base,
            baseline_name="same table before",
            ratio=Stat.of([v / base.median for v in stat.runs]),
            load=(before, load1()),
            notes={"first_poll_ms": round(first, 2)},
        )
    )

    vacuum_analyze(engine)
    holder = engine.connect()
    try:
        holder.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        holder.execute(text("SELECT count(*) FROM api_keys"))  # takes the snapshot
        drain_in_sql(engine, sessions, churn, first=20_000_000_000)
        before = load1()
        stat = Stat.of([empty_polls(sessions, polls) for _ in range(runs)])
        plan = explain_empty_poll(engine)
        results.add(
            Figure(
                "poll",
                f"empty poll after a {churn:,} drain, snapshot held open",
                "ms",
                stat,
                baseline=base,
                baseline_name="same table before",
                ratio=Stat.of([v / base.median for v in stat.runs]),
                load=(before, load1()),
                notes={"plan": plan},
            )
        )
        print("   plan while the snapshot is held:\n   " + plan.replace("\n", "\n   "))
    finally:
        holder.rollback()
        holder.close()
    # The snapshot released: the next poll marks the dead entries, later ones skip them.
    stat = Stat.of([empty_polls(sessions, polls) for _ in range(runs)])
    results.add(
        Figure(
            "poll",
            "empty poll after the snapshot is released (no vacuum)",
            "ms",
            stat,
            baseline=base,
            baseline_name="same table before",
            ratio=Stat.of([v / base.median for v in stat.runs]),
            load=(before, load1()),
        )
    )
