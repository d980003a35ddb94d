"""Cursor pages of ``GET /v1/callbacks`` at depth: page 1 against page 1,000 (issue 16).

``python -m tests.perf.bench_pages [--rows 100000] [--limit 100] [--runs 30]``

One organization with ``--rows`` callbacks in a fresh PostgreSQL database (migrated to
head); every page walked once through the real app (in-process ASGI client, so routing,
auth, the query and JSON are all in the figure) to get page 1,000's cursor; then each of
page 1 and page 1,000 fetched ``--runs`` times, and the same depth by ``OFFSET`` for
contrast. Prints medians (min-max) in milliseconds and the page-1,000 plan.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.support.databases import fresh_postgres_database, sqlalchemy_url
from worker.api.app import create_app
from worker.api.cursors import decode
from worker.api.reads import ListFilter
from worker.apikeys import create_key
from worker.creation import schedule
from worker.db.engine import make_engine, make_sessions
from worker.db.migrate import upgrade
from worker.settings import Settings
from worker.validation import NewCallback

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/11")
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
CHUNK = 5000


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ms ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    with fresh_postgres_database("callbacks_pages") as libpq:
        url = sqlalchemy_url(libpq)
        upgrade(url)
        engine = make_engine(url)
        sessions = make_sessions(engine)
        started = time.perf_counter()
        item = NewCallback(organization_id="org_1", to_number="+12015551234", scheduled_at=T0)
        for n in range(0, args.rows, CHUNK):
            with sessions.begin() as s:
                schedule(
                    s,
                    [item] * min(CHUNK, args.rows - n),
                    now=T0 - timedelta(days=1) + timedelta(seconds=n),
                    actor="bench",
                    lateness=None,
                )
        with sessions.begin() as s:
            _, token = create_key(s, "org_1", now=T0)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE callbacks"))
        print(f"{args.rows:,} callbacks inserted in {time.perf_counter() - started:.0f} s")
        settings = Settings(database_url=url, broker_url=REDIS_URL)
        headers = {"Authorization": f"Bearer {token}"}
        with TestClient(create_app(settings, sessions=sessions)) as client:
            cursors: list[str | None] = [None]
            walk = time.perf_counter()
            while True:
                cursor = cursors[-1]
                q = f"/v1/callbacks?limit={args.limit}" + (f"&cursor={cursor}" if cursor else "")
                body = client.get(q, headers=headers).json()
                if body["next_cursor"] is None:
                    break
                cursors.append(body["next_cursor"])
            pages = len(cursors)
            print(f"walked {pages:,} pages of {args.limit} in {time.perf_counter() - walk:.1f} s")
            deep = min(1000, pages)

            def page_url(cursor: str | None) -> str:
                return f"/v1/callbacks?limit={args.limit}" + (f"&cursor={cursor}" if cursor else "")

            # Alternated, so both pages see the same load on this shared machine.
            times: dict[int, list[float]] = {1: [], deep: []}
            for _ in range(args.runs):
                for page in (1, deep):
                    t = time.perf_counter()
                    r = client.get(page_url(cursors[page - 1]), headers=headers)
                    times[page].append((time.perf_counter() - t) * 1000)
                    assert r.status_code == 200
            print(f"page 1      (HTTP, limit {args.limit}): {_ms(times[1])}")
            print(f"page {deep:,} (HTTP, limit {args.limit}): {_ms(times[deep])}")
        position = decode(str(cursors[deep - 1]), ListFilter().scope("org_1"))
        keyset_sql = text(
            "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT * FROM callbacks "
            "WHERE organization_id = 'org_1' AND (created_at, id) < (:at, :id) "
            "ORDER BY created_at DESC, id DESC LIMIT :limit"
        )
        with engine.connect() as conn:
            plan = conn.execute(
                keyset_sql, {"at": position.created_at, "id": position.id, "limit": args.limit + 1}
            ).scalars()
            print(f"page {deep:,} plan:\n  " + "\n  ".join(plan))
        offset_sql = text(
            "SELECT * FROM callbacks WHERE organization_id = 'org_1' "
            "ORDER BY created_at DESC, id DESC LIMIT :limit OFFSET :offset"
        )
        with engine.connect() as conn:
            by_offset = {}
            for page in (1, deep):
                runs = []
                for _ in range(args.runs):
                    t = time.perf_counter()
                    conn.execute(
                        offset_sql, {"limit": args.limit, "offset": (page - 1) * args.limit}
                    ).all()
                    runs.append((time.perf_counter() - t) * 1000)
                by_offset[page] = runs
            print(
                f"for contrast, OFFSET (SQL only): page 1 {_ms(by_offset[1])}, "
                f"page {deep:,} {_ms(by_offset[deep])}"
            )
        engine.dispose()


if __name__ == "__main__":
    main()
