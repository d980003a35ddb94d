"""Admin API read latency on a large table: list and get, p50/p99, with the plans used.

Not collected by pytest (tests/perf is ignored). Run it on its own:

    python -m tests.perf.bench_api                 # 1,000,000 callbacks, 100 organizations
    python -m tests.perf.bench_api --rows 100000   # quicker
    python -m tests.perf.bench_api --load --rows 100000 --ref 7f26958   # throughput, wrk

``--load`` measures throughput instead: the default ``callbacks api`` command as a real
process, driven by wrk (50 connections by default) with get-by-id and list (limit 25)
requests spread over every organization's key, several runs, each run measuring in turn
a bare Starlette endpoint doing one database round trip (the baseline), the API as it
was at ``--ref`` (optional) and this tree. ``--profile DIR`` adds a py-spy profile of
this tree's server under each load (summarized with tests.perf.profile_report).

It makes a fresh PostgreSQL database (dropped afterwards), migrates it, fills it in one
``INSERT ... SELECT generate_series`` (realistic mix of statuses, ~2 callbacks per source
session, created over 90 days in pairs sharing a timestamp), ANALYZEs, then times
requests through the real app (auth included, in-process ASGI client, one at a time) and
prints ``EXPLAIN (ANALYZE, BUFFERS)`` of each list query.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session, sessionmaker

from tests.perf.api_load import lua_script, profile, run_wrk, scratch, servers_for, table
from tests.perf.profile_report import summarize
from tests.support.databases import REDIS_URL, fresh_postgres_database, sqlalchemy_url
from worker.actions import list_query
from worker.api.app import create_app
from worker.apikeys import create_key
from worker.clock import SystemClock
from worker.db.engine import make_engine, make_sessions
from worker.db.migrate import upgrade
from worker.settings import Settings
from worker.status import Status

FILL = """
INSERT INTO callbacks (
    id, organization_id, source_session_id, to_number, scheduled_at, status,
    pipeline_config, metadata, created_at, updated_at, due_at, attempts,
    attempt_in_flight, dispatch_round, dispatched_at, created_session_id
)
SELECT
    'cb_' || lpad(i::text, 26, '0'),
    'org_' || lpad((i % :orgs)::text, 3, '0'),
    'sess_' || (i / 2),
    '+1201555' || lpad((i % 10000)::text, 4, '0'),
    created + interval '1 day',
    s.status,
    '{}'::jsonb, jsonb_build_object('n', i),
    created, created, created + interval '1 day',
    CASE WHEN s.status = 'scheduled' THEN 0 ELSE 1 END,
    false, 1,
    CASE WHEN s.status = 'dispatched' THEN created + interval '1 day' END,
    CASE WHEN s.status = 'dispatched' THEN 'sess_new_' || i END
FROM generate_series(1, :rows) AS i,
LATERAL (SELECT
    -- 90 days; rows come in pairs sharing one created_at, so the id tie-break is exercised
    timestamptz '2026-01-01' + make_interval(secs => ((i / 2)::bigint * 15552000 / :rows)::int)
        AS created
) AS c,
LATERAL (SELECT (i / :orgs) % 100 AS pct) AS p,  -- independent of the organization
LATERAL (SELECT CASE
    WHEN pct < 70 THEN 'dispatched'
    WHEN pct < 85 THEN 'scheduled'
    WHEN pct < 92 THEN 'cancelled'
    WHEN pct < 97 THEN 'failed'
    ELSE 'dispatching' END AS status
) AS s
"""


def fill(engine: Engine, rows: int, orgs: int) -> None:
    started = time.monotonic()
    with engine.begin() as conn:
        conn.execute(text(FILL), {"rows": rows, "orgs": orgs})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE callbacks"))
    print(f"filled {rows:,} callbacks across {orgs} orgs in {time.monotonic() - started:.1f}s")


def explain(
    sessions: sessionmaker[Session],
    label: str,
    *,
    status: Status | None = None,
    source_session_id: str | None = None,
    limit: int = 25,
) -> None:
    query = list_query("org_042", status=status, source_session_id=source_session_id, limit=limit)
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    sql = query.compile(dialect=dialect, compile_kwargs={"literal_binds": True})
    with sessions() as s:
        plan = s.execute(text(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")).scalars().all()
    print(f"\n-- plan: {label}\n" + "\n".join(plan))


def timed(name: str, n: int, request: Callable[[int], int]) -> None:
    for i in range(20):  # warm the pool and caches
        request(i)
    samples = []
    for i in range(n):
        t = time.perf_counter()
        status = request(i)
        samples.append((time.perf_counter() - t) * 1000)
        assert status == 200, (name, status)
    samples.sort()
    p50 = statistics.median(samples)
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    print(f"{name:<34} n={n:<5} p50={p50:6.2f} ms  p99={p99:6.2f} ms")


WORRYING = ("Traceback", "ERROR", "WARNING")


def load(args: argparse.Namespace) -> None:
    """Throughput under wrk: see the module's docstring."""
    if shutil.which("wrk") is None:
        raise SystemExit("--load needs wrk: apt-get install -y wrk")
    print(f"load before: {os.getloadavg()}; {os.cpu_count()} cpus")
    with fresh_postgres_database("callbacks_bench") as libpq_url, scratch() as tmp:
        workdir = Path(tmp)
        url = sqlalchemy_url(libpq_url)
        upgrade(url)
        engine = make_engine(url, pool_size=4)
        fill(engine, args.rows, args.orgs)
        with make_sessions(engine).begin() as s:
            tokens = [
                create_key(s, f"org_{o:03d}", now=SystemClock().now())[1] for o in range(args.orgs)
            ]
        engine.dispose()
        rng = random.Random(7)
        ids = [rng.randrange(1, args.rows + 1) for _ in range(5_000)]
        scripts = {
            "GET /v1/callbacks/{id}": [
                (f"/v1/callbacks/cb_{i:026d}", tokens[i % args.orgs], f"org_{i % args.orgs:03d}")
                for i in ids
            ],
            "GET /v1/callbacks?limit=25": [
                ("/v1/callbacks?limit=25", tokens[o], f"org_{o:03d}") for o in range(args.orgs)
            ],
        }
        paths = {}
        for n, (name, requests) in enumerate(scripts.items()):
            paths[name] = workdir / f"load{n}.lua"
            paths[name].write_text(lua_script(requests))
        server_env = dict(v.split("=", 1) for v in args.server_env)
        servers = servers_for(
            libpq_url,
            REDIS_URL,
            workdir,
            ref=args.ref,
            bare_workers=args.bare_workers,
            server_env=server_env,
            variants={
                label: dict(v.split("=", 1) for v in spec.split())
                for label, _, spec in (x.partition(":") for x in args.variant)
            },
        )
        busy: list[subprocess.Popen[bytes]] = []
        try:
            for server in servers:
                server.start()
            for server in servers:
                server.wait_ready("/v1/callbacks/cb_none")
            for script in paths.values():  # warm: pools, prepared statements, caches
                for server in servers:
                    run_wrk(
                        server.base + "/",
                        script,
                        connections=args.connections,
                        threads=1,
                        seconds=3,
                    )
            # Neighbours that want a whole CPU each, as a worker draining on the same host
            # would: Linux shares the CPU between their threads and the servers'.
            busy = [
                subprocess.Popen([sys.executable, "-c", "while True: pass"])
                for _ in range(args.busy)
            ]
            for run in range(args.runs):
                for name, script in paths.items():
                    for server in servers:
                        before = os.getloadavg()[0]
                        r = server.measure(
                            script,
                            connections=args.connections,
                            threads=args.threads,
                            seconds=args.seconds,
                        )
                        server.results.setdefault(name, []).append(r)
                        print(
                            f"run {run + 1} {name:<26} {server.name:<36} {r.rps:8,.0f} req/s "
                            f"p50 {r.p50_ms:6.1f} ms p99 {r.p99_ms:6.1f} ms "
                            f"cpu {r.cpu_ms:.2f} ms/req "
                            f"errors {r.errors} ({r.socket_errors} socket) "
                            f"load {before:.1f}",
                            flush=True,
                        )
            print(f"\nload after: {os.getloadavg()}")
            print(table(servers, list(paths), args.connections))
            if args.profile:
                args.profile.mkdir(parents=True, exist_ok=True)
                for n, (name, script) in enumerate(paths.items()):
                    out = args.profile / f"api-load{n}.raw"
                    profile(servers[-1], script, out, connections=args.connections, seconds=12)
                    print(f"\n== profile of this tree under {name} ({out})")
                    print(summarize(out, top=20))
        finally:
            for neighbour in busy:
                neighbour.kill()
                neighbour.wait()
            for server in servers:
                server.stop()
            for server in servers:
                log = server.log.read_text(errors="replace")
                codes = Counter(re.findall(r'HTTP/1.1" (\d{3})', log))
                problems = sorted(
                    {x[24:] for x in log.splitlines() if any(w in x for w in WORRYING)}
                )
                print(f"{server.name}: access log statuses {dict(codes)}; {len(problems)} errors")
                for line in problems[:5]:
                    print("   ", line[:300])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=None, help="1,000,000; 100,000 with --load")
    parser.add_argument("--orgs", type=int, default=100)
    parser.add_argument("--requests", type=int, default=1_000)
    parser.add_argument("--load", action="store_true", help="throughput under wrk (see above)")
    parser.add_argument("--ref", default=None, help="--load: also the API as of this git ref")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (it shares the cpus)")
    parser.add_argument("--bare-workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="--load: extra environment for the callbacks api servers (e.g. LOG_LEVEL=WARNING)",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="LABEL:NAME=VALUE ...",
        help="--load: also this tree with extra environment, e.g. '1 proc:WEB_CONCURRENCY=1'",
    )
    parser.add_argument(
        "--busy", type=int, default=0, help="--load: N busy-looping processes beside the servers"
    )
    parser.add_argument("--profile", type=Path, default=None, help="--load: py-spy into DIR")
    args = parser.parse_args()
    if args.load:
        args.rows = args.rows or 100_000
        load(args)
        return
    args.rows = args.rows or 1_000_000

    with fresh_postgres_database("callbacks_bench") as libpq_url:
        url = sqlalchemy_url(libpq_url)
        upgrade(url)
        engine = make_engine(url, pool_size=4)
        sessions = make_sessions(engine)
        fill(engine, args.rows, args.orgs)
        with sessions.begin() as s:
            tokens = [
                create_key(s, f"org_{o:03d}", now=SystemClock().now())[1] for o in range(args.orgs)
            ]

        explain(sessions, "list (default)")
        explain(sessions, "list ?status=scheduled", status=Status.SCHEDULED)
        explain(sessions, "list ?status=failed&limit=100", status=Status.FAILED, limit=100)
        explain(sessions, "list ?source_session_id=...", source_session_id="sess_21021")
        print()

        rng = random.Random(7)
        ids = [f"cb_{rng.randrange(1, args.rows):026d}" for _ in range(args.requests + 20)]
        orgs_of = {i: int(i[3:]) % args.orgs for i in ids}
        settings = Settings(database_url=url, broker_url=REDIS_URL)
        app = create_app(settings, sessions=sessions)
        n = args.requests
        with TestClient(app) as client:

            def get(path: str, org: int) -> int:
                auth = {"Authorization": f"Bearer {tokens[org]}"}
                return client.get(path, headers=auth).status_code

            timed("GET /v1/callbacks", n, lambda i: get("/v1/callbacks", i % args.orgs))
            timed(
                "GET /v1/callbacks?limit=100",
                n,
                lambda i: get("/v1/callbacks?limit=100", i % args.orgs),
            )
            timed(
                "GET /v1/callbacks?status=scheduled",
                n,
                lambda i: get("/v1/callbacks?status=scheduled", i % args.orgs),
            )
            timed(
                "GET ...?source_session_id=",
                n,
                lambda i: get(
                    f"/v1/callbacks?source_session_id=sess_{int(ids[i][3:]) // 2}",
                    orgs_of[ids[i]],
                ),
            )
            timed(
                "GET /v1/callbacks/{id}",
                n,
                lambda i: get(f"/v1/callbacks/{ids[i]}", orgs_of[ids[i]]),
            )
            timed("GET /healthz (no database)", n, lambda i: client.get("/healthz").status_code)
        engine.dispose()


if __name__ == "__main__":
    main()
