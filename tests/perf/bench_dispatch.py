"""The dispatch path alone, no Celery: claimed callbacks dispatched through the log
dialer from N threads against a fresh PostgreSQL database. It shows what bounds a worker
process: per-callback Python and round trips under one GIL, not the thread count.

    python -m tests.perf.bench_dispatch [--callbacks 1000] [--threads 1 8 32] [--batch 1 10]

``--batch``: callbacks per dispatch call (the worker's DISPATCH_BATCH_SIZE), dialed side
by side on a pool of threads x batch threads, as the worker does.
"""

from __future__ import annotations

import argparse
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from tests.support.databases import fresh_postgres_database, sqlalchemy_url
from worker.claims import claim_due
from worker.clock import SystemClock
from worker.creation import schedule
from worker.db.engine import make_engine, make_sessions
from worker.db.migrate import upgrade
from worker.dialer.log import LogDialer
from worker.dispatch import Dispatcher, dispatch_many
from worker.logs import configure_logging
from worker.policy import DispatchPolicy
from worker.settings import Settings
from worker.validation import NewCallback


def run(callbacks: int, threads: int, batch: int) -> float:
    """Dispatch ``callbacks`` claimed callbacks from ``threads`` threads; callbacks/s."""
    with fresh_postgres_database("callbacks_bench") as libpq:
        url = sqlalchemy_url(libpq)
        upgrade(url)
        engine = make_engine(url, pool_size=max(4, threads // 4))
        sessions = make_sessions(engine)
        clock = SystemClock()
        now = clock.now()
        new = [
            NewCallback(
                organization_id=f"org_{i % 5}",
                to_number="+12015551234",
                scheduled_at=now - timedelta(minutes=1),
            )
            for i in range(callbacks)
        ]
        with sessions.begin() as s:
            schedule(s, new, now=now, actor="bench")
        work: queue.Queue[list[str]] = queue.Queue()
        while True:
            with sessions.begin() as s:
                ids = claim_due(s, now=clock.now(), batch_size=500, lease=timedelta(minutes=5))
            if not ids:
                break
            for start in range(0, len(ids), batch):
                work.put(ids[start : start + batch])
        dials = ThreadPoolExecutor(threads * batch)
        d = Dispatcher(sessions, clock, LogDialer(), DispatchPolicy(), dials)

        def drain() -> None:
            while True:
                try:
                    ids = work.get_nowait()
                except queue.Empty:
                    return
                dispatch_many(d, ids)

        pool = [threading.Thread(target=drain) for _ in range(threads)]
        began = time.perf_counter()
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        elapsed = time.perf_counter() - began
        dials.shutdown()
        engine.dispose()
    return callbacks / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--callbacks", type=int, default=1000)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 10])
    args = parser.parse_args()
    configure_logging(Settings(database_url="postgresql+psycopg://bench", log_level="WARNING"))
    for batch in args.batch:
        for threads in args.threads:
            rate = run(args.callbacks, threads, batch)
            print(
                f"dispatch path: {args.callbacks} callbacks, {threads} threads, "
                f"batches of {batch}: {rate:,.0f}/s"
            )


if __name__ == "__main__":
    main()
