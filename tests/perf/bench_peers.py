"""(g) Peers on the same job, same machine, same stand-in: Procrastinate and naive Celery ETA.

The same backlog of past-due callbacks (the same rows, so each peer also marks them
dispatched), the same number of dials in flight (ours: WORKER_CONCURRENCY x
DISPATCH_BATCH_SIZE; each peer: that many concurrent tasks), the same provider delay.
Every system is timed over the same window, from the first dial the stand-in sees to the
last ``dispatched_at``; the ratio is ours over the peer's (above 1: ours is faster).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from datetime import datetime
from pathlib import Path

import psycopg
from procrastinate.schema import SchemaManager
from procrastinate.types import JSONValue
from sqlalchemy import Engine, text

from tests.perf.bench_drain import (
    DISPATCH_QUEUE,
    DrainRun,
    count_left,
    publisher,
    reset_tables,
    service_env,
)
from tests.perf.common import Figure, Results, Stat, fill_callbacks, flush_redis, load1
from tests.perf.stand_in import StandIn
from tests.support.processes import Processes, wait_until
from worker.settings import load_settings


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _backlog(engine: Engine, count: int) -> list[tuple[str, str, datetime]]:
    reset_tables(engine)
    fill_callbacks(engine, count, events=False)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT id, to_number, scheduled_at FROM callbacks ORDER BY id")
        ).all()
    return [(r[0], r[1], r[2]) for r in rows]


def _window(engine: Engine, stand_in: StandIn) -> float:
    with engine.connect() as conn:
        last = conn.execute(text("SELECT max(dispatched_at) FROM callbacks")).scalar_one()
    return float(last.timestamp() - stand_in.stats()["first"])


def _wait(engine: Engine, procs: Processes, count: int, delay: float, name: str) -> None:
    try:
        wait_until(
            lambda: count_left(engine) == 0,
            timeout=120 + count * max(delay, 0.01),
            what=f"{name}: {count} callbacks dispatched",
        )
    except AssertionError:
        print(procs.log(name)[-3000:])
        raise


def drain_eta(
    engine: Engine, url: str, stand_in: StandIn, *, count: int, delay: float, concurrency: int
) -> float:
    rows = _backlog(engine, count)
    flush_redis()
    stand_in.reset(delay)
    app = publisher()
    with app.producer_or_acquire() as producer:
        for callback_id, to, at in rows:
            app.send_task(
                "perf.eta_dial", (callback_id, to), eta=at, queue=DISPATCH_QUEUE, producer=producer
            )
    with tempfile.TemporaryDirectory(prefix="perf-eta-") as tmp:
        env = service_env(url, stand_in, {"WORKER_CONCURRENCY": str(concurrency)})
        procs = Processes(Path(tmp), env)
        try:
            procs.start("eta", "celery", "-A", "tests.perf.peer_eta_app", "worker")
            _wait(engine, procs, count, delay, "eta")
        finally:
            procs.stop_all()
    return count / _window(engine, stand_in)


def _job(callback_id: str, to: str) -> dict[str, JSONValue]:
    return {"callback_id": callback_id, "to": to}


async def _defer(rows: list[tuple[str, str, datetime]]) -> None:
    from tests.perf.peer_procrastinate import app, place_call

    async with app.open_async():
        for i in range(0, len(rows), 1000):
            chunk = rows[i : i + 1000]
            await place_call.configure(schedule_at=chunk[0][2]).batch_defer_async(
                *[_job(c, t) for c, t, _ in chunk]
            )


def _procrastinate_schema(engine: Engine, url: str) -> None:
    with engine.begin() as conn:
        exists = conn.execute(text("SELECT to_regclass('procrastinate_jobs')")).scalar_one()
        if exists:
            conn.execute(text("TRUNCATE procrastinate_jobs CASCADE"))
            return
    with psycopg.connect(_libpq(url), autocommit=True) as conn:
        conn.execute(SchemaManager.get_schema().encode())


def drain_procrastinate(
    engine: Engine, url: str, stand_in: StandIn, *, count: int, delay: float, concurrency: int
) -> float:
    _procrastinate_schema(engine, url)
    rows = _backlog(engine, count)
    stand_in.reset(delay)
    os.environ["PERF_DSN"] = _libpq(url)
    try:
        asyncio.run(_defer(rows))
    finally:
        os.environ.pop("PERF_DSN", None)
    env = service_env(
        url, stand_in, {"PERF_DSN": _libpq(url), "PERF_CONCURRENCY": str(concurrency)}
    )
    with tempfile.TemporaryDirectory(prefix="perf-procrastinate-") as tmp:
        procs = Processes(Path(tmp), env)
        try:
            procs.start(
                "procrastinate",
                "procrastinate",
                "--app=tests.perf.peer_procrastinate.app",
                "worker",
                f"--concurrency={concurrency}",
            )
            _wait(engine, procs, count, delay, "procrastinate")
        finally:
            procs.stop_all()
    return count / _window(engine, stand_in)


def run_peers(
    results: Results,
    engine: Engine,
    url: str,
    stand_in: StandIn,
    *,
    count: int,
    runs: int,
    ours_by_delay: dict[float, list[DrainRun]],
) -> None:
    concurrency = load_settings(database_url=url).dials_in_flight
    for delay, ours_runs in ours_by_delay.items():
        ours = [r.count / r.extra["first_dial_to_last_dispatch"] for r in ours_runs]
        for name in ("procrastinate", "celery eta"):
            print(f"\n== peer {name}: {count:,} callbacks, provider {delay * 1000:.0f} ms")
            before = load1()
            rates = []
            for i in range(runs):
                began = time.monotonic()
                if name == "procrastinate":
                    rate = drain_procrastinate(
                        engine, url, stand_in, count=count, delay=delay, concurrency=concurrency
                    )
                else:
                    rate = drain_eta(
                        engine, url, stand_in, count=count, delay=delay, concurrency=concurrency
                    )
                rates.append(rate)
                print(f"   run {i + 1}: {rate:.0f}/s ({time.monotonic() - began:.0f}s)")
            peer = Stat.of(rates)
            results.add(
                Figure(
                    "peers",
                    f"ours vs {name}, {count:,} callbacks, provider {delay * 1000:.0f} ms",
                    "cb/s",
                    Stat.of(ours),
                    baseline=peer,
                    baseline_name=name,
                    ratio=Stat.of([o / peer.median for o in ours]),
                    target="> 1x",
                    load=(before, load1()),
                    notes={"window": "first dial -> last dispatched_at, for all"},
                )
            )
