"""Admin API read latency on a large table: list and get, p50/p99, with the plans used.

Not collected by pytest (tests/perf is ignored). Run it on its own:

    python -m tests.perf.bench_api                 # 1,000,000 callbacks, 100 organizations
    python -m tests.perf.bench_api --rows 100000   # quicker

It makes a fresh PostgreSQL database (dropped afterwards), migrates it, fills it in one
``INSERT ... SELECT generate_series`` (realistic mix of statuses, ~2 callbacks per source
session, created over 90 days in pairs sharing a timestamp), ANALYZEs, then times
requests through the real app (auth included, in-process ASGI client, one at a time) and
prints ``EXPLAIN (ANALYZE, BUFFERS)`` of each list query.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session, sessionmaker

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--orgs", type=int, default=100)
    parser.add_argument("--requests", type=int, default=1_000)
    args = parser.parse_args()

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
