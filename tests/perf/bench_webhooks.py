"""Webhook deliveries to one endpoint: how many a second, and where each one's time goes.

``python -m tests.perf.bench_webhooks [--deliveries 2000] [--runs 2] [--profile DIR]``:
a backlog of due deliveries (two events per callback, so the order rule is in play) to
one endpoint, a receiver on 127.0.0.1 in a process of its own (answers 204 at once,
keep-alive), delivered by the real ``celery -A worker worker -Q callbacks.webhooks`` and
``celery -A worker beat`` configured only by the environment (``WEBHOOK_*`` overrides in
the caller's environment are passed on). Rate: deliveries from the first attempt to the
last (both from ``webhook_attempts``). ``--profile DIR``: py-spy (every thread, idle
included: wall time) of the worker during the first run.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from tests.perf.bench_drain import WEBHOOK_TABLES
from tests.perf.common import (
    API_KEY,
    PERF_REDIS_URL,
    Figure,
    Results,
    Stat,
    bench_database,
    flush_redis,
    load1,
    machine_meta,
    perf_env,
)
from tests.support.processes import Processes, wait_until

ENDPOINT = "whe_bench"
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

FILL = """
INSERT INTO webhook_events (id, organization_id, callback_id, type, sequence, created_at,
                            payload)
SELECT 'msg_bench_' || lpad(i::text, 7, '0'), 'org_bench', 'cb_bench_' || (i / 2),
       CASE WHEN i % 2 = 0 THEN 'callback.scheduled' ELSE 'callback.dispatched' END,
       1 + i % 2, now(),
       jsonb_build_object('type', 'callback.scheduled', 'timestamp', now()::text,
         'data', jsonb_build_object('callback', jsonb_build_object(
           'id', 'cb_bench_' || (i / 2), 'organization_id', 'org_bench',
           'to_number', '+12015550100', 'status', 'scheduled', 'reason', repeat('x', 200),
           'metadata', jsonb_build_object('crm_id', i, 'note', repeat('y', 300))),
           'previous_status', NULL, 'detail', '{}'::jsonb))
FROM generate_series(0, :n - 1) AS i;
INSERT INTO webhook_deliveries (id, event_id, endpoint_id, organization_id, callback_id,
                                event_type, sequence, status, attempts, next_attempt_at,
                                next_trigger, created_at, updated_at)
SELECT 'whd_bench_' || lpad(i::text, 7, '0'), 'msg_bench_' || lpad(i::text, 7, '0'),
       :endpoint, 'org_bench', 'cb_bench_' || (i / 2),
       CASE WHEN i % 2 = 0 THEN 'callback.scheduled' ELSE 'callback.dispatched' END,
       1 + i % 2, 'pending', 0, now() - interval '1 second', 'automatic', now(), now()
FROM generate_series(0, :n - 1) AS i;
"""


def sink(port_file: Path) -> None:
    """The receiver: 204 at once, HTTP/1.1 keep-alive, in its own process."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    port_file.write_text(str(server.server_address[1]))
    server.serve_forever()


def fill(engine: Engine, url: str, n: int) -> None:
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(WEBHOOK_TABLES)} RESTART IDENTITY CASCADE"))
        conn.execute(
            text(
                "INSERT INTO webhook_endpoints (id, organization_id, url, events, enabled, "
                "secret, created_at, updated_at) VALUES (:id, 'org_bench', :url, "
                "'[]'::jsonb, true, :secret, now(), now())"
            ),
            {"id": ENDPOINT, "url": url, "secret": SECRET},
        )
        for statement in FILL.split(";"):
            if statement.strip():
                conn.execute(text(statement), {"n": n, "endpoint": ENDPOINT})
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(
            text("VACUUM ANALYZE webhook_deliveries")
        )


@contextmanager
def wall_profile(pid: int, out: Path | None) -> Iterator[None]:
    """py-spy of every thread of ``pid``, idle included: where a delivery's wall time goes
    (waiting on the database, the receiver, the queue), not only its CPU."""
    if out is None:
        yield
        return
    spy = subprocess.Popen(
        [str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(pid), "-o", str(out),
         "-f", "raw", "-r", "100", "--idle", "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        try:
            spy.wait(60)
        except subprocess.TimeoutExpired:
            spy.kill()


def delivered(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM webhook_deliveries WHERE status = 'delivered'")
            ).scalar_one()
        )


def one_run(
    engine: Engine, db_url: str, sink_url: str, n: int, profile: Path | None
) -> dict[str, Any]:
    fill(engine, sink_url, n)
    flush_redis()
    overrides = {k: v for k, v in os.environ.items() if k.startswith("WEBHOOK_")}
    env = perf_env(
        DATABASE_URL=db_url,
        BROKER_URL=PERF_REDIS_URL,
        SPEKO_API_URL="http://127.0.0.1:9",
        SPEKO_API_KEY=API_KEY,
        **overrides,
    )
    with tempfile.TemporaryDirectory(prefix="perf-hooks-") as tmp:
        procs = Processes(Path(tmp), env)
        try:
            worker = procs.start(
                "hooks", "celery", "-A", "worker", "worker", "-Q", "callbacks.webhooks"
            )
            wait_until(lambda: " ready." in procs.log("hooks"), timeout=120, what="worker")
            with wall_profile(worker.pid, profile):
                procs.start("beat", "celery", "-A", "worker", "beat")
                wait_until(
                    lambda: delivered(engine) == n,
                    timeout=120 + n,
                    what=f"{n} deliveries",
                )
        finally:
            procs.stop_all()
    with engine.connect() as conn:
        first, last, attempts, p50, p99 = conn.execute(
            text(
                "SELECT min(at), max(at), count(*), "
                "percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms), "
                "percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ms) "
                "FROM webhook_attempts"
            )
        ).one()
    seconds = (last - first).total_seconds()
    return {
        "rate": n / seconds,
        "seconds": seconds,
        "attempts": int(attempts),
        "attempt_ms_p50": float(p50),
        "attempt_ms_p99": float(p99),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.perf.bench_webhooks")
    parser.add_argument("--deliveries", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--profile", type=Path, help="py-spy the first run's worker (raw)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--sink", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink:
        sink(args.sink)
        return
    overrides = {k: v for k, v in os.environ.items() if k.startswith("WEBHOOK_")}
    results = Results({**machine_meta(), "args": vars(args) | {"env": overrides}})
    with tempfile.TemporaryDirectory(prefix="perf-sink-") as tmp:
        port_file = Path(tmp) / "port"
        receiver = subprocess.Popen(
            [sys.executable, "-m", "tests.perf.bench_webhooks", "--sink", str(port_file)]
        )
        try:
            wait_until(
                lambda: port_file.exists() and port_file.read_text() != "",
                timeout=30,
                what="the receiver",
            )
            sink_url = f"http://127.0.0.1:{port_file.read_text()}/hooks"
            with bench_database("callbacks_perf_hooks") as (db_url, engine):
                before = load1()
                runs = []
                for i in range(args.runs):
                    profile = None
                    if args.profile and i == 0:
                        args.profile.mkdir(parents=True, exist_ok=True)
                        profile = args.profile / "webhooks-worker.raw"
                    run = one_run(engine, db_url, sink_url, args.deliveries, profile)
                    runs.append(run)
                    print(
                        f"run {i + 1}: {run['rate']:.1f} deliveries/s over "
                        f"{run['seconds']:.1f} s, {run['attempts']} attempts, attempt p50 "
                        f"{run['attempt_ms_p50']:.1f} ms p99 {run['attempt_ms_p99']:.1f} ms, "
                        f"load {load1():.2f}",
                        flush=True,
                    )
                after = load1()
        finally:
            receiver.terminate()
            receiver.wait(10)
    results.add(
        Figure(
            "webhooks",
            f"{args.deliveries:,} deliveries to one endpoint {overrides or ''}".strip(),
            "deliveries/s",
            Stat.of([r["rate"] for r in runs]),
            load=(before, after),
            notes={"runs": runs},
        )
    )
    print(results.table())
    results.write(args.out or Path(f"perf-webhooks-{time.strftime('%Y%m%d-%H%M%S')}.json"))


if __name__ == "__main__":
    main()
