"""The console's pages in a real browser at 100,000 (or more) callbacks (issue 16).

``python -m tests.perf.bench_console [--rows 100000] [--runs 9]``

A fresh PostgreSQL database (migrated to head) gets ``--rows`` callbacks over 10
organizations (``org_0`` holds about a seventh), mixed statuses, the history a dispatch leaves
for the dispatched ones over the last 3 days (so the overview's 3-hour charts read a
24th of it); then ``VACUUM ANALYZE``. A real
``callbacks api`` process (one worker) serves the console; Debian's Chromium, driven by
Playwright, signs in and loads each page ``--runs`` times. A page's time is the
browser's own navigation timing, from the request to the load event (the server's
work, the HTML's transfer, the stylesheet, layout). The baseline, measured in the same
run and the same way, is ``/healthz``: what any page costs at least on this machine.
Prints medians (min-max) in milliseconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import redis
from sqlalchemy import text

from tests.support.browser import SCREENSHOTS, chromium
from tests.support.databases import fresh_postgres_database, sqlalchemy_url
from tests.support.processes import free_port, processes, service_env, wait_until
from worker.apikeys import create_key
from worker.console.listing import encode_cursor
from worker.creation import schedule
from worker.db.engine import make_engine, make_sessions
from worker.db.migrate import upgrade
from worker.db.models import Callback
from worker.validation import NewCallback

PERF_REDIS_URL = os.environ.get("PERF_REDIS_URL", "redis://127.0.0.1:6379/11")
SEED = 5_000
ORGS = 10

NAVIGATION_MS = """() => {
  const n = performance.getEntriesByType('navigation')[0];
  return n.loadEventEnd - n.startTime;
}"""


def seed(url: str, rows: int, now: datetime) -> None:
    """``SEED`` callbacks through the real service, then copies of them by SQL (new ids,
    earlier creation times, spread over organizations, numbers and statuses) until
    ``rows``: the shape of a busy table without hours of inserts."""
    engine = make_engine(url)
    sessions = make_sessions(engine)
    items = [
        NewCallback(
            organization_id="org_0",
            to_number=f"+1201555{i % 10000:04d}",
            scheduled_at=now + timedelta(hours=1),
        )
        for i in range(min(SEED, rows))
    ]
    with sessions.begin() as s:
        schedule(s, items, now=now - timedelta(days=1), actor="bench", lateness=None)
    columns = [c.name for c in Callback.__table__.columns]
    replaced = {
        "id": "'cb_' || substr(md5(id || :round), 1, 26)",
        "created_at": "created_at - (:round * interval '1 day') - random() * interval '1 hour'",
        "organization_id": "'org_' || floor(random() * :orgs)::int",
        "to_number": "'+1201' || lpad(floor(random() * 10000000)::text, 7, '0')",
    }
    select_list = ", ".join(replaced.get(c, c) for c in columns)
    copy = text(
        f"INSERT INTO callbacks ({', '.join(columns)}) "
        f"SELECT {select_list} FROM callbacks ORDER BY created_at DESC LIMIT :want"
    )
    with engine.begin() as conn:
        have, round_ = min(SEED, rows), 1
        while have < rows:
            want = min(have, rows - have)
            conn.execute(copy, {"round": round_, "orgs": ORGS, "want": want})
            have += want
            round_ += 1
        # Statuses as a day of work leaves them; dispatched ones with their history.
        conn.execute(
            text(
                "UPDATE callbacks SET status = (ARRAY['dispatched','dispatched','dispatched',"
                "'failed','cancelled'])[1 + floor(random() * 5)::int], "
                "dispatched_at = :now - random() * interval '3 days', attempts = 1, "
                "failure_cause = 'provider refused the call: HTTP 404' "
                "WHERE random() < 0.6"
            ),
            {"now": now},
        )
        conn.execute(
            text(
                "UPDATE callbacks SET due_at = :now - random() * interval '2 minutes' "
                "WHERE status = 'scheduled' AND random() < 0.01"
            ),
            {"now": now},
        )
        for event, frm, to in (
            ('{"event": "attempt started", "attempt": 1}', "dispatching", "dispatching"),
            ('{"attempt": 1}', "dispatching", "dispatched"),
        ):
            conn.execute(
                text(
                    "INSERT INTO callback_events (callback_id, at, from_status, to_status, "
                    "actor, detail) SELECT id, dispatched_at, :frm, :to, 'worker', "
                    "CAST(:detail AS jsonb) FROM callbacks WHERE status = 'dispatched'"
                ),
                {"frm": frm, "to": to, "detail": event},
            )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    now = datetime.now(UTC).replace(microsecond=0)
    r = redis.Redis.from_url(PERF_REDIS_URL)
    r.flushdb()
    r.close()
    with fresh_postgres_database("callbacks_console") as libpq:
        url = sqlalchemy_url(libpq)
        upgrade(url)
        started = time.perf_counter()
        seed(url, args.rows, now)
        engine = make_engine(url)
        with make_sessions(engine).begin() as s:
            _, org_key = create_key(s, "org_0", now=now)
            _, op_key = create_key(s, None, now=now, operator=True)
        with engine.connect() as conn:
            total = conn.scalar(text("SELECT count(*) FROM callbacks"))
            in_org = conn.scalar(
                text("SELECT count(*) FROM callbacks WHERE organization_id='org_0'")
            )
            deep = conn.execute(
                text(
                    "SELECT created_at, id FROM callbacks WHERE organization_id = 'org_0' "
                    "ORDER BY created_at DESC, id DESC OFFSET 5000 LIMIT 1"
                )
            ).one()
            one_id = conn.scalar(
                text("SELECT id FROM callbacks WHERE status = 'dispatched' LIMIT 1")
            )
            number = conn.scalar(
                # One of the numbers created through the service (valid, so the filter
                # accepts it; the copies' random ones need not be real numbers).
                text(
                    "SELECT to_number FROM callbacks WHERE organization_id = 'org_0' "
                    "AND to_number LIKE '+1201555%' LIMIT 1"
                )
            )
        engine.dispose()
        print(
            f"{total:,} callbacks ({in_org:,} in org_0) seeded in "
            f"{time.perf_counter() - started:.0f} s"
        )
        port = free_port()
        env = service_env(
            DATABASE_URL=url,
            BROKER_URL=PERF_REDIS_URL,
            DIALER="log",
            PORT=str(port),
            WEB_CONCURRENCY="1",
            LOG_LEVEL="WARNING",
        )
        base = f"http://127.0.0.1:{port}"
        with tempfile.TemporaryDirectory() as work, processes(Path(work), env) as procs:
            procs.start("api", "callbacks", "api", "--host", "127.0.0.1")
            wait_until(lambda: _up(base), timeout=60, what="callbacks api")
            cursor = encode_cursor(deep.created_at, deep.id)
            pages = {
                "baseline: /healthz": "/healthz",
                "table, org_0, first page": "/console/callbacks",
                "table, org_0, page 101 (cursor)": f"/console/callbacks?cursor={cursor}",
                "table, org_0, status=failed": "/console/callbacks?status=failed",
                "table, org_0, by phone number": f"/console/callbacks?to_number={number}",
                "table, org_0, scheduled range": "/console/callbacks?scheduled_after="
                f"{(now + timedelta(minutes=30)):%Y-%m-%dT%H:%M}&scheduled_before="
                f"{(now + timedelta(hours=2)):%Y-%m-%dT%H:%M}",
                "one callback": f"/console/callbacks/{one_id}",
                "overview, org_0": "/console",
            }
            operator_pages = {
                "baseline: /healthz": "/healthz",
                "table, operator, all orgs": "/console/callbacks",
                "table, operator, status=failed": "/console/callbacks?status=failed",
                "overview, operator (all orgs)": "/console",
            }
            for who, key, wanted in (
                ("org_0 key", org_key, pages),
                ("operator key", op_key, operator_pages),
            ):
                print(
                    f"-- {who}: browser navigation to the load event, ms, "
                    f"median (min-max) of {args.runs}"
                )
                with tempfile.TemporaryDirectory() as profile, chromium(Path(profile)) as browser:
                    page = browser.new_page()
                    page.goto(f"{base}/console/login")
                    page.fill("#api_key", key)
                    page.press("#api_key", "Enter")
                    page.wait_for_url(f"{base}/console")
                    for name, path in wanted.items():
                        times = []
                        rows = 0
                        for _ in range(args.runs):
                            page.goto(base + path, wait_until="load")
                            times.append(float(page.evaluate(NAVIGATION_MS)))
                        rows = page.locator("input[name=ids]").count()
                        print(
                            f"{name:40s} {statistics.median(times):7.1f} "
                            f"({min(times):.1f}-{max(times):.1f})"
                            + (f"  [{rows} rows shown]" if rows else "")
                        )
                    if who == "operator key":
                        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                        page.goto(base + "/console")
                        shot = SCREENSHOTS / f"overview-{args.rows}.png"
                        page.screenshot(path=str(shot), full_page=True)
                        print(f"screenshot: {shot}")


def _up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()
