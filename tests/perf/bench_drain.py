"""(c) Drain, (d) lag and (f) memory: the real ``celery -A worker worker`` and ``beat``.

Both run as the Procfile runs them, configured only by the environment (DATABASE_URL,
BROKER_URL, SPEKO_API_URL, SPEKO_API_KEY, plus any WORKER_*/POLL_* override in the
caller's environment), against the stand-in provider in its own process.

Drain: a backlog of past-due callbacks; callbacks/s from the first claim to the last
``dispatched_at`` (both read from the database). Baseline, same run: a bare no-op Celery
task (``tests/perf/noop_app.py``) with the same settings through the same broker, from
the first publish to the last ack; and a task that only sleeps the provider's delay.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from celery import Celery
from sqlalchemy import Engine, text

from tests.perf.common import (
    API_KEY,
    PERF_REDIS_URL,
    CpuSampler,
    Figure,
    Results,
    RssSampler,
    Stat,
    commits,
    fill_callbacks,
    flush_redis,
    load1,
    perf_env,
    vacuum_analyze,
)
from tests.perf.stand_in import StandIn
from tests.support.processes import Processes, wait_until

DISPATCH_QUEUE = "callbacks.dispatch"


@dataclass
class DrainRun:
    count: int
    seconds: float
    rate: float
    rss_peak: dict[str, float]
    rss_first: dict[str, float]
    commits_per_callback: float
    provider: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)


def service_env(url: str, stand_in: StandIn, overrides: Mapping[str, str]) -> dict[str, str]:
    return perf_env(
        DATABASE_URL=url,
        BROKER_URL=PERF_REDIS_URL,
        SPEKO_API_URL=stand_in.url,
        SPEKO_API_KEY=API_KEY,
        # Measure throughput, not the callee's clock: every hour is inside the window
        # (the stand-in numbers are +1201..., whose local morning would defer them).
        CALLING_WINDOW_START="00:00",
        CALLING_WINDOW_END="24:00",
        **overrides,
    )


def reset_tables(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE callback_events, callbacks RESTART IDENTITY"))
        conn.execute(text(f"TRUNCATE {', '.join(WEBHOOK_TABLES)} RESTART IDENTITY"))
    vacuum_analyze(engine)


WEBHOOK_TABLES = ("webhook_attempts", "webhook_deliveries", "webhook_events", "webhook_endpoints")
SUBSCRIBED = os.environ.get("PERF_WEBHOOKS") == "1"
"""``PERF_WEBHOOKS=1``: every organization has a webhook endpoint, so each dispatch also
writes its callback.dispatched event to the outbox (the sweep is kept idle: what is
measured is the outbox's cost to the drain, not the deliveries)."""


PROCESSES = int(os.environ.get("PERF_WORKER_PROCESSES", "1"))
"""``PERF_WORKER_PROCESSES=N``: the drain runs N ``celery -A worker worker`` processes (one
beat), and the no-op baseline N no-op worker processes (issue 13: 1 and 2 on 2 cores)."""
SLEEP_TASK = os.environ.get("PERF_NO_SLEEP_TASK") != "1"
"""``PERF_NO_SLEEP_TASK=1`` skips the sleeping-task baseline (a shorter run)."""


def start_workers(procs: Processes, app: str) -> list[subprocess.Popen[bytes]]:
    if PROCESSES == 1:
        return [procs.start("worker", "celery", "-A", app, "worker")]
    return [
        procs.start(f"worker{i}", "celery", "-A", app, "worker", "-n", f"w{i}@%h")
        for i in range(1, PROCESSES + 1)
    ]


def cpu_between(samplers: list[CpuSampler], start: float, end: float) -> float:
    return sum(s.between(start, end) for s in samplers)


def subscribe_every_organization(engine: Engine) -> dict[str, str]:
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO webhook_endpoints (id, organization_id, url, events, enabled, "
                "secret, created_at, updated_at) SELECT 'whe_perf_' || o, 'org_' || o, "
                "'http://127.0.0.1:9/perf', '[]'::jsonb, true, 'whsec_cGVyZg==', now(), now() "
                "FROM generate_series(0, 9) AS o"
            )
        )
    return {"WEBHOOK_SWEEP_INTERVAL": "3600"}


def count_left(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM callbacks WHERE status <> 'dispatched'")
            ).scalar_one()
        )


@contextmanager
def profiler(pid: int, out: Path, enabled: bool) -> Iterator[None]:
    """py-spy sampling the worker while the block runs: only the thread holding the GIL,
    since a process bound by its GIL shows every thread waiting for it as busy."""
    if not enabled:
        yield
        return
    spy = subprocess.Popen(
        [
            str(Path(__import__("sys").executable).parent / "py-spy"),
            "record",
            "-p",
            str(pid),
            "-o",
            str(out),
            "-f",
            "raw",
            "-r",
            "250",
            "--nonblocking",
            "--gil",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        try:
            spy.wait(60)
        except subprocess.TimeoutExpired:
            spy.kill()


def drain_ours(
    engine: Engine,
    url: str,
    stand_in: StandIn,
    *,
    count: int,
    delay: float,
    overrides: Mapping[str, str] | None = None,
    profile: Path | None = None,
) -> DrainRun:
    reset_tables(engine)
    flush_redis()
    stand_in.reset(delay)
    fill_callbacks(engine, count)
    vacuum_analyze(engine)
    vacuum_analyze(engine, "callback_events")
    commits_before = commits(engine)
    overrides = dict(overrides or {})
    if SUBSCRIBED:
        overrides |= subscribe_every_organization(engine)
    env = service_env(url, stand_in, overrides)
    with tempfile.TemporaryDirectory(prefix="perf-drain-") as tmp:
        procs = Processes(Path(tmp), env)
        try:
            workers = start_workers(procs, "worker")
            worker = workers[0]
            beat = procs.start("beat", "celery", "-A", "worker", "beat")
            sampler = RssSampler({"worker": worker.pid, "beat": beat.pid})
            cpus = [CpuSampler(w.pid) for w in workers]
            with contextlib.ExitStack() as stack:
                stack.enter_context(sampler)
                for cpu in cpus:
                    stack.enter_context(cpu)
                stack.enter_context(
                    profiler(worker.pid, profile or Path(tmp) / "none", profile is not None)
                )
                try:
                    wait_until(
                        lambda: count_left(engine) == 0,
                        timeout=120 + count * max(delay, 0.01),
                        what=f"{count} callbacks dispatched",
                    )
                except AssertionError:
                    print(procs.log(next(iter(procs.running)))[-3000:])
                    raise
                time.sleep(0.2)  # a sample after the last dispatch
        finally:
            procs.stop_all()
    time.sleep(1.0)  # pg_stat_database catches up with the backends' last reports
    with engine.connect() as conn:
        first, last, attempts = conn.execute(
            text(
                "SELECT (SELECT min(at) FROM callback_events WHERE to_status = 'dispatching' "
                "AND from_status = 'scheduled'), max(dispatched_at), sum(attempts) "
                "FROM callbacks"
            )
        ).one()
    with engine.connect() as conn:
        outbox = int(conn.execute(text("SELECT count(*) FROM webhook_events")).scalar_one())
    seconds = (last - first).total_seconds()
    provider = stand_in.stats()
    return DrainRun(
        count=count,
        seconds=seconds,
        rate=count / seconds,
        rss_peak=sampler.peak,
        rss_first=sampler.first,
        commits_per_callback=(commits(engine) - commits_before) / count,
        provider=provider,
        extra={
            "attempts": int(attempts),
            "first_dial_to_last_dispatch": last.timestamp() - provider["first"],
            "webhook_events": outbox,
            "cpu_ms_per_callback": cpu_between(cpus, first.timestamp(), last.timestamp())
            * 1000
            / count,
        },
    )


def publisher() -> Celery:
    return Celery("perf_publisher", broker=PERF_REDIS_URL, set_as_current=False)


def queue_empty(client: redis.Redis) -> bool:
    return client.llen(DISPATCH_QUEUE) == 0 and client.hlen("unacked") == 0


@dataclass
class BaselineRun:
    rate: float
    cpu_ms_per_task: float
    """CPU of the worker process(es) from the first publish to the last ack, per task."""


def drain_baseline(url: str, stand_in: StandIn, *, count: int, sleep: float) -> BaselineRun:
    """Tasks/s of ``perf.noop`` (or ``perf.sleep``) from first publish to last ack."""
    flush_redis()
    env = service_env(url, stand_in, {})
    client = redis.Redis.from_url(PERF_REDIS_URL)
    app = publisher()
    name, args = ("perf.sleep", (sleep,)) if sleep else ("perf.noop", (0,))
    with tempfile.TemporaryDirectory(prefix="perf-noop-") as tmp:
        procs = Processes(Path(tmp), env)
        try:
            workers = start_workers(procs, "tests.perf.noop_app")
            for _ in workers:
                app.send_task("perf.noop", (0,), queue=DISPATCH_QUEUE)
            time.sleep(0.5)
            wait_until(lambda: queue_empty(client), timeout=60, what="the noop worker to start")
            time.sleep(0.5 + PROCESSES)  # every worker up and consuming
            cpus = [CpuSampler(w.pid) for w in workers]
            with contextlib.ExitStack() as stack:
                for cpu in cpus:
                    stack.enter_context(cpu)
                time.sleep(0.1)
                began, began_at = time.monotonic(), time.time()
                with app.producer_or_acquire() as producer:
                    for _ in range(count):
                        app.send_task(name, args, queue=DISPATCH_QUEUE, producer=producer)
                while True:
                    if queue_empty(client):
                        ended, ended_at = time.monotonic(), time.time()
                        time.sleep(0.02)
                        if queue_empty(client):
                            break
                    time.sleep(0.005)
                time.sleep(0.2)
        finally:
            procs.stop_all()
            client.close()
    spent = cpu_between(cpus, began_at, ended_at)
    return BaselineRun(count / (ended - began), spent * 1000 / count)


def run_drain(
    results: Results,
    engine: Engine,
    url: str,
    stand_in: StandIn,
    *,
    count: int,
    delays: list[float],
    runs: int,
    profile_dir: Path | None,
) -> dict[float, list[DrainRun]]:
    ours_by_delay: dict[float, list[DrainRun]] = {}
    for delay in delays:
        print(f"\n== drain: {count:,} past-due callbacks, provider at {delay * 1000:.0f} ms")
        before = load1()
        ours: list[DrainRun] = []
        noop: list[float] = []
        noop_cpu: list[float] = []
        slept: list[float] = []
        for i in range(runs):
            profile = (
                profile_dir / f"drain-{count}-{int(delay * 1000)}ms.raw"
                if (profile_dir and i == 0)
                else None
            )
            run = drain_ours(engine, url, stand_in, count=count, delay=delay, profile=profile)
            assert run.provider["duplicates"] == 0, run.provider
            assert run.provider["keys"] == count, run.provider
            ours.append(run)
            base = drain_baseline(url, stand_in, count=count, sleep=0.0)
            noop.append(base.rate)
            noop_cpu.append(base.cpu_ms_per_task)
            if delay and SLEEP_TASK:
                # A rate, steady after a few hundred tasks: at 16 threads 20,000 tasks of
                # 200 ms would take minutes per run.
                slept.append(
                    drain_baseline(url, stand_in, count=min(count, 2000), sleep=delay).rate
                )
            print(
                f"   run {i + 1}: ours {run.rate:.0f}/s over {run.seconds:.1f}s, "
                f"noop {noop[-1]:.0f}/s, CPU ms per callback "
                f"{run.extra['cpu_ms_per_callback']:.3f} vs per no-op task {noop_cpu[-1]:.3f}"
                + (f", sleep-task {slept[-1]:.0f}/s" if slept else "")
                + f", {run.commits_per_callback:.2f} commits/callback, "
                f"RSS peak worker {run.rss_peak.get('worker', 0):.0f} MiB, "
                f"{run.extra['webhook_events']} webhook events",
                flush=True,
            )
        after = load1()
        rates = [r.rate for r in ours]
        ours_by_delay[delay] = ours
        notes = {
            "commits_per_callback": [round(r.commits_per_callback, 2) for r in ours],
            "rss_peak_mib": [r.rss_peak for r in ours],
            "seconds": [round(r.seconds, 2) for r in ours],
            "first_dial_to_last_dispatch_s": [
                round(r.extra["first_dial_to_last_dispatch"], 2) for r in ours
            ],
        }
        label = f"{count:,} callbacks, provider {delay * 1000:.0f} ms" + (
            f", {PROCESSES} worker processes" if PROCESSES > 1 else ""
        )
        results.add(
            Figure(
                "drain",
                label,
                "cb/s",
                Stat.of(rates),
                baseline=Stat.of(noop),
                baseline_name="bare no-op Celery task",
                ratio=Stat.of([r / n for r, n in zip(rates, noop, strict=True)]),
                target=">= 0.8x",
                load=(before, after),
                notes=notes,
            )
        )
        ours_cpu = [r.extra["cpu_ms_per_callback"] for r in ours]
        results.add(
            Figure(
                "drain",
                f"{label}: worker CPU per callback",
                "ms",
                Stat.of(ours_cpu),
                baseline=Stat.of(noop_cpu),
                baseline_name="per bare no-op Celery task",
                ratio=Stat.of([o / n for o, n in zip(ours_cpu, noop_cpu, strict=True)]),
                target="<= 1.0x",
                load=(before, after),
            )
        )
        if slept:
            results.add(
                Figure(
                    "drain",
                    f"{label}, vs a task sleeping {delay * 1000:.0f} ms",
                    "cb/s",
                    Stat.of(rates),
                    baseline=Stat.of(slept),
                    baseline_name=f"Celery task sleeping {delay * 1000:.0f} ms "
                    f"({min(count, 2000):,} tasks)",
                    ratio=Stat.of([r / s for r, s in zip(rates, slept, strict=True)]),
                    load=(before, after),
                )
            )
    return ours_by_delay


def idle_rss(
    engine: Engine, url: str, stand_in: StandIn, *, seconds: float = 8.0
) -> dict[str, float]:
    """Peak RSS (MiB) of a worker and beat started on an empty table: the baseline."""
    reset_tables(engine)
    flush_redis()
    with tempfile.TemporaryDirectory(prefix="perf-idle-") as tmp:
        procs = Processes(Path(tmp), service_env(url, stand_in, {}))
        try:
            worker = procs.start("worker", "celery", "-A", "worker", "worker")
            beat = procs.start("beat", "celery", "-A", "worker", "beat")
            with RssSampler({"worker": worker.pid, "beat": beat.pid}) as sampler:
                time.sleep(seconds)  # start-up and a few empty polls: real processes, real time
        finally:
            procs.stop_all()
    return sampler.peak


def run_memory(
    results: Results, engine: Engine, url: str, stand_in: StandIn, *, count: int
) -> None:
    print(f"\n== memory: worker and beat RSS while {count:,} callbacks drain (provider 0 ms)")
    before = load1()
    idle = idle_rss(engine, url, stand_in)
    run = drain_ours(engine, url, stand_in, count=count, delay=0.0)
    for name in ("worker", "beat"):
        peak = run.rss_peak.get(name, 0.0)
        results.add(
            Figure(
                "memory",
                f"{name} peak RSS, {count:,} backlog",
                "MiB",
                Stat.of([peak]),
                baseline=Stat.of([idle.get(name, 0.0)]),
                baseline_name="idle, empty table",
                ratio=Stat.of([peak / max(idle.get(name, 1.0), 1.0)]),
                load=(before, load1()),
                notes={"drain_rate": round(run.rate, 1)},
            )
        )


def run_lag(
    results: Results,
    engine: Engine,
    url: str,
    stand_in: StandIn,
    *,
    rate: int,
    seconds: int,
    delay: float,
    runs: int,
    poll_interval: float = 1.0,
    overrides: Mapping[str, str] | None = None,
    tag: str = "",
) -> None:
    count = rate * seconds
    print(f"\n== lag: {rate}/s coming due for {seconds}s, provider {delay * 1000:.0f} ms {tag}")
    before = load1()
    p50s: list[float] = []
    p99s: list[float] = []
    worst: list[float] = []
    for i in range(runs):
        reset_tables(engine)
        flush_redis()
        stand_in.reset(delay)
        lead = 8.0  # time for the worker and beat to start before the first comes due
        fill_callbacks(
            engine, count, start_sql=f"now() + interval '{lead} seconds'", step_seconds=1 / rate
        )
        vacuum_analyze(engine)
        env = service_env(url, stand_in, overrides or {})
        with tempfile.TemporaryDirectory(prefix="perf-lag-") as tmp:
            procs = Processes(Path(tmp), env)
            try:
                procs.start("worker", "celery", "-A", "worker", "worker")
                procs.start("beat", "celery", "-A", "worker", "beat")
                wait_until(
                    lambda: count_left(engine) == 0,
                    timeout=lead + seconds + 300,
                    what=f"{count} callbacks dispatched",
                )
            finally:
                procs.stop_all()
        with engine.connect() as conn:
            p50, p99, top = conn.execute(
                text(
                    "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY lag), "
                    "percentile_cont(0.99) WITHIN GROUP (ORDER BY lag), max(lag) FROM ("
                    "SELECT extract(epoch FROM attempted_at - scheduled_at) AS lag "
                    "FROM callbacks) AS l"
                )
            ).one()
        p50s.append(float(p50))
        p99s.append(float(p99))
        worst.append(float(top))
        print(f"   run {i + 1}: p50 {p50:.2f}s p99 {p99:.2f}s max {top:.2f}s", flush=True)
    target = poll_interval + 1.0
    name = f"{rate}/s for {seconds}s, provider {delay * 1000:.0f} ms{tag}"
    results.add(Figure("lag", f"p50, {name}", "s", Stat.of(p50s), load=(before, load1())))
    results.add(
        Figure(
            "lag",
            f"p99, {name}",
            "s",
            Stat.of(p99s),
            baseline=Stat.of([target]),
            baseline_name="target poll interval + 1 s",
            ratio=Stat.of([p / target for p in p99s]),
            target="<= 1.0x",
            load=(before, load1()),
            notes={"max_lag_s": worst},
        )
    )
