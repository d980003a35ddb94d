"""Fairness through the queue (issue 13), measured as a user would see it.

One organization's backlog of past-due callbacks drains through the real
``celery -A worker worker`` and ``celery -A worker beat`` (and ``callbacks api``) against
the provider stand-in. Once it is draining, a second organization's callbacks are created
due now, one at a time, each timed from its ``created_at`` to its ``dispatched_at``; and
callbacks not due for an hour are dispatched by hand, through the admin API
(``POST /v1/callbacks/{id}/dispatch``) and through the Celery task ``callbacks.dispatch``,
each timed from the request to its ``dispatched_at``. The target: p99 within the poll
interval + the provider's latency + 1 s.

Baseline, same run: the same bench against another checkout's code (``--fair-baseline
/work/main``: the worker, beat and API import that tree's ``worker`` package), usually
main before backpressure.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from celery import Celery
from sqlalchemy import Engine, text

from tests.perf.bench_drain import reset_tables, service_env
from tests.perf.common import (
    PERF_REDIS_URL,
    Figure,
    Results,
    Stat,
    fill_callbacks,
    flush_redis,
    load1,
    vacuum_analyze,
)
from tests.perf.stand_in import StandIn
from tests.support.processes import Processes, free_port, wait_until
from worker.celery.config import MANUAL_QUEUE
from worker.db.migrate import alembic_config, upgrade

BIG = "org_big"
SMALL = "org_small"
MANUAL = "org_manual"


@dataclass
class FairRun:
    code: str
    backlog: int
    arrivals: list[float]
    """Seconds from created_at to dispatched_at, a second organization's due-now callbacks."""
    api: list[float]
    """Seconds from the API request to dispatched_at, not-yet-due callbacks."""
    celery: list[float]
    """Seconds from sending callbacks.dispatch to dispatched_at, not-yet-due callbacks."""
    dispatched_before: int
    """Backlog callbacks already dispatched when the first arrival was created."""
    deepest_queue: int = 0
    """Most messages seen waiting in the poller's dispatch queue while arrivals came."""
    rate: float = 0.0
    """Callbacks dispatched per second while the arrivals came (all organizations)."""
    stages: dict[str, list[float]] = field(default_factory=dict)
    """The arrivals' wait split: created -> claimed (the claim's ``now``), claimed ->
    attempt started, attempt started -> dispatched (seconds, in arrival order)."""
    window: list[int] = field(default_factory=list)
    """Claims not yet started, sampled with the queue's depth while arrivals came."""


NEW = text(
    "INSERT INTO callbacks (id, organization_id, to_number, scheduled_at, status, reason, "
    "pipeline_config, metadata, created_at, updated_at, due_at, attempts, attempt_in_flight, "
    "dispatch_round, outcome_pulls) VALUES (:id, :org, :to, :at, 'scheduled', 'fairness', "
    "'{}'::jsonb, '{}'::jsonb, clock_timestamp(), clock_timestamp(), :at, 0, false, 1, 0)"
)


def _new(engine: Engine, org: str, at: datetime | None, n: int) -> str:
    """A callback as creation writes it (by SQL: the same columns whichever code is being
    measured; ``created_at`` from the database's clock). ``at=None``: due now."""
    cid = f"cb_fair_{n:06d}_{uuid.uuid4().hex[:8]}"
    due = at or datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(NEW, {"id": cid, "org": org, "to": f"+1202555{n % 10_000:04d}", "at": due})
    return cid


def their_head(root: Path) -> str:
    config = Config()
    config.set_main_option("script_location", str(root / "worker" / "db" / "migrations"))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


class QueueDepth:
    """Samples LLEN of the poller's dispatch queue, and the claims not yet started, twice
    a second, in a thread."""

    UNSTARTED = text(
        "SELECT count(*) FROM callbacks WHERE status = 'dispatching' AND NOT attempt_in_flight"
    )

    def __init__(self, engine: Engine) -> None:
        self.deepest = 0
        self.unstarted: list[int] = []
        self._engine = engine
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        client = redis.Redis.from_url(PERF_REDIS_URL)
        try:
            while not self._stop.wait(0.5):
                self.deepest = max(self.deepest, int(client.llen("callbacks.dispatch")))
                with self._engine.connect() as conn:
                    self.unstarted.append(int(conn.execute(self.UNSTARTED).scalar_one()))
        finally:
            client.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def _post(url: str, token: str) -> None:
    request = urllib.request.Request(  # noqa: S310 (our own API on loopback)
        url,
        data=b"{}",
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 (loopback)
        answer.read()


def _dispatched_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM callbacks WHERE status = 'dispatched'")
            ).scalar_one()
        )


def fair_run(
    engine: Engine,
    url: str,
    stand_in: StandIn,
    *,
    backlog: int,
    arrivals: int,
    manual: int,
    delay: float,
    every: float,
    code_root: Path | None,
    overrides: Mapping[str, str] | None = None,
) -> FairRun:
    reset_tables(engine)
    flush_redis()
    stand_in.reset(delay)
    fill_callbacks(engine, backlog, events=False)
    with engine.begin() as conn:
        conn.execute(text("UPDATE callbacks SET organization_id = :org"), {"org": BIG})
    vacuum_analyze(engine)
    env = service_env(url, stand_in, dict(overrides or {}))
    if code_root is not None:
        env["PYTHONPATH"] = str(code_root)
        # That code refuses a schema newer than its own: take this one back to its head.
        command.downgrade(alembic_config(url), their_head(code_root))
    else:
        upgrade(url)
    port = free_port()
    app = Celery("perf_fair", broker=PERF_REDIS_URL, set_as_current=False)
    manual_queue = MANUAL_QUEUE if code_root is None else "callbacks.dispatch"
    created: dict[str, datetime] = {}
    api_sent: dict[str, float] = {}
    celery_sent: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="perf-fair-") as tmp:
        procs = Processes(Path(tmp), env)
        try:
            token = procs.run("callbacks", "api-key", "create", "--org", MANUAL)
            assert token.returncode == 0, token.stderr.decode()
            key = token.stdout.decode().strip().splitlines()[-1].strip()
            procs.start("api", "callbacks", "api", "--port", str(port))
            procs.start("worker", "celery", "-A", "worker", "worker")
            try:
                wait_until(lambda: _ready(port), timeout=60, what="the admin API")
            except AssertionError:
                print(procs.log("api")[-3000:])
                raise
            procs.start("beat", "celery", "-A", "worker", "beat")
            wait_until(
                lambda: _dispatched_count(engine) > 0, timeout=120, what="the drain to start"
            )
            time.sleep(2.0)  # real processes: let the backlog's queue build as it would
            before = _dispatched_count(engine)
            depth = QueueDepth(engine)
            began = time.monotonic()
            later = datetime.now(UTC) + timedelta(hours=1)
            # Interleaved, one every `every` seconds: arrivals, then API and Celery dispatches.
            plan = ["arrival"] * arrivals + ["api", "celery"] * manual
            order = sorted(range(len(plan)), key=lambda i: (i * 7919) % len(plan))
            for n, i in enumerate(order):
                what = plan[i]
                if what == "arrival":
                    cid = _new(engine, SMALL, None, n)
                    created[cid] = datetime.now(UTC)
                else:
                    cid = _new(engine, MANUAL, later, n)
                    if what == "api":
                        api_sent[cid] = time.time()
                        _post(f"http://127.0.0.1:{port}/v1/callbacks/{cid}/dispatch", key)
                    else:
                        # To the queue `celery -A worker call callbacks.dispatch` routes it
                        # to in the code under test (this tree: the operators' queue; main:
                        # the one dispatch queue), sent from here so the time is the
                        # worker's, not a command's start-up.
                        celery_sent[cid] = time.time()
                        app.send_task("callbacks.dispatch", (cid,), queue=manual_queue)
                time.sleep(every)
            depth.stop()
            during = time.monotonic() - began
            rate = (_dispatched_count(engine) - before) / during
            ids = [*created, *api_sent, *celery_sent]

            def all_dispatched() -> bool:
                with engine.connect() as conn:
                    n = conn.execute(
                        text(
                            "SELECT count(*) FROM callbacks WHERE id = ANY(:ids) "
                            "AND dispatched_at IS NOT NULL"
                        ),
                        {"ids": ids},
                    ).scalar_one()
                return int(n) == len(ids)

            try:
                wait_until(all_dispatched, timeout=120 + backlog / 200, what="the arrivals")
            except AssertionError:
                print(procs.log("worker")[-3000:])
                raise
        finally:
            procs.stop_all()
            keep = os.environ.get("PERF_FAIR_LOGS")
            if keep:  # the services' logs, to read after the run (a directory)
                for name in ("worker", "beat", "api"):
                    shutil.copy(Path(tmp) / f"{name}.log", Path(keep) / f"{backlog}-{name}.log")
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT id, created_at, claimed_at, attempted_at, dispatched_at "
                "FROM callbacks WHERE id = ANY(:ids)"
            ),
            {"ids": ids},
        ).all()
    done = {row.id: row for row in rows}

    def waited(sent: Mapping[str, float]) -> list[float]:
        return [done[cid].dispatched_at.timestamp() - at for cid, at in sent.items()]

    return FairRun(
        code=str(code_root or "this tree"),
        backlog=backlog,
        arrivals=[
            (done[cid].dispatched_at - done[cid].created_at).total_seconds() for cid in created
        ],
        api=waited(api_sent),
        celery=waited(celery_sent),
        dispatched_before=before,
        deepest_queue=depth.deepest,
        rate=rate,
        stages={
            "to claim": [_secs(done[c].claimed_at, done[c].created_at) for c in created],
            "to start": [_secs(done[c].attempted_at, done[c].claimed_at) for c in created],
            "to dispatched": [_secs(done[c].dispatched_at, done[c].attempted_at) for c in created],
        },
        window=depth.unstarted,
    )


def _secs(later: datetime | None, earlier: datetime | None) -> float:
    return float("nan") if later is None or earlier is None else (later - earlier).total_seconds()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q * len(ordered) + 0.5) - 1))
    return ordered[rank]


def _say(run: FairRun) -> None:
    print(
        f"   {run.code}: arrivals p50 {statistics.median(run.arrivals):.2f}s "
        f"p99 {pct(run.arrivals, 0.99):.2f}s; API p50 {statistics.median(run.api):.2f}s "
        f"p99 {pct(run.api, 0.99):.2f}s; Celery p50 {statistics.median(run.celery):.2f}s "
        f"p99 {pct(run.celery, 0.99):.2f}s "
        f"({run.dispatched_before} of the backlog dispatched at the first arrival; "
        f"dispatch queue up to {run.deepest_queue} messages; drain {run.rate:.0f}/s meanwhile)",
        flush=True,
    )
    for stage, values in run.stages.items():
        print(
            f"     arrivals, {stage}: p50 {statistics.median(values):.2f}s "
            f"max {max(values):.2f}s  [{' '.join(f'{v:.2f}' for v in values)}]"
        )
    if run.window:
        print(f"     claims not started (every 0.5 s): {run.window}", flush=True)


def run_fairness(
    results: Results,
    engine: Engine,
    url: str,
    stand_in: StandIn,
    *,
    backlogs: list[int],
    arrivals: int,
    manual: int,
    delay: float,
    every: float,
    baseline_root: Path | None,
    poll_interval: float = 1.0,
) -> list[FairRun]:
    target = poll_interval + delay + 1.0
    runs: list[FairRun] = []
    for backlog in backlogs:
        print(
            f"\n== fairness: {backlog:,} due of one organization draining; {arrivals} due-now "
            f"of another, {manual} API and {manual} Celery dispatches; provider "
            f"{delay * 1000:.0f} ms"
        )
        before = load1()
        ours = fair_run(
            engine,
            url,
            stand_in,
            backlog=backlog,
            arrivals=arrivals,
            manual=manual,
            delay=delay,
            every=every,
            code_root=None,
        )
        _say(ours)
        base = None
        if baseline_root is not None:
            base = fair_run(
                engine,
                url,
                stand_in,
                backlog=backlog,
                arrivals=arrivals,
                manual=manual,
                delay=delay,
                every=every,
                code_root=baseline_root,
            )
            _say(base)
        after = load1()
        runs += [run for run in (ours, base) if run is not None]
        for kind in ("arrivals", "api", "celery"):
            mine: list[float] = getattr(ours, kind)
            theirs: list[float] | None = None if base is None else getattr(base, kind)
            what = {
                "arrivals": "another organization's due-now callback",
                "api": "API dispatch of a not-yet-due callback",
                "celery": "callbacks.dispatch of a not-yet-due callback",
            }[kind]
            for q, name in ((0.5, "p50"), (0.99, "p99")):
                value = pct(mine, q)
                results.add(
                    Figure(
                        "fairness",
                        f"{name}, {what}, beside {backlog:,} backlog, provider "
                        f"{delay * 1000:.0f} ms ({len(mine)})",
                        "s",
                        Stat.of([value]),
                        baseline=None if theirs is None else Stat.of([pct(theirs, q)]),
                        baseline_name="" if theirs is None else f"{base.code if base else ''}",
                        ratio=None if theirs is None else Stat.of([value / pct(theirs, q)]),
                        target=f"<= {target:.2f} s" if name == "p99" else "",
                        load=(before, after),
                        notes={
                            "ours": mine,
                            "baseline": theirs,
                            "drain_rate": [ours.rate, base.rate if base else None],
                            "deepest_queue": [
                                ours.deepest_queue,
                                base.deepest_queue if base else None,
                            ],
                        },
                    )
                )
    return runs


def main() -> None:
    """``python -m tests.perf.bench_fairness``: this bench alone (see tests/perf/run.py)."""
    import argparse

    from tests.perf.common import bench_database, machine_meta
    from tests.perf.stand_in import running_stand_in

    parser = argparse.ArgumentParser(prog="python -m tests.perf.bench_fairness")
    parser.add_argument("--backlogs", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--arrivals", type=int, default=20)
    parser.add_argument("--manual", type=int, default=10, help="API and Celery dispatches each")
    parser.add_argument("--delay", type=float, default=0.05)
    parser.add_argument("--every", type=float, default=0.5, help="seconds between arrivals")
    parser.add_argument("--fair-baseline", type=Path, help="another checkout to compare with")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results = Results({**machine_meta(), "args": vars(args)})
    with running_stand_in() as stand_in, bench_database() as (url, engine):
        run_fairness(
            results,
            engine,
            url,
            stand_in,
            backlogs=args.backlogs,
            arrivals=args.arrivals,
            manual=args.manual,
            delay=args.delay,
            every=args.every,
            baseline_root=args.fair_baseline,
        )
    print("\n" + results.table())
    if args.out:
        results.write(args.out)
        print(json.dumps({"written": str(args.out)}))


if __name__ == "__main__":
    main()
