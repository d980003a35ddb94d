"""Concurrency caps hold with several pollers and workers racing, counted by the provider
stand-in itself (PostgreSQL, real HTTP, real threads)."""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.support.factories import make_callback
from tests.support.provider import Provider, Received, Reply
from worker.clock import SystemClock
from worker.db.models import Callback
from worker.dialer.speko import SpekoDialer
from worker.dispatch import Dispatcher, dispatch
from worker.pacing.limits import Pacing
from worker.pacing.orgs import upsert
from worker.pacing.windows import DAY_MINUTES, Window
from worker.policy import DispatchPolicy
from worker.poller import PollLimits, poll
from worker.status import Status


class Meter:
    """Counts calls in progress at the provider, per organization and per number."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()

    def __call__(self, req: Received) -> Reply:
        meta = req.body.get("metadata", {}) if isinstance(req.body, dict) else {}
        keys = [f"org:{meta.get('organization_id')}"]
        if meta.get("phone_number_id"):
            keys.append(f"num:{meta['phone_number_id']}")
        with self.lock:
            for k in keys:
                self.now[k] += 1
                self.peak[k] = max(self.peak[k], self.now[k])
        time.sleep(0.05)  # the call takes a while to set up
        with self.lock:
            for k in keys:
                self.now[k] -= 1
        return Reply(200)


def test_caps_are_never_exceeded_with_racing_pollers_and_workers(
    pg_sessions: sessionmaker[Session],
) -> None:
    now = SystemClock().now()
    with pg_sessions.begin() as s:
        for i in range(30):
            make_callback(
                s,
                org="org_a",
                scheduled_at=now - timedelta(seconds=1),
                phone_number_id=f"pn{i % 3}",
            )
        for _ in range(10):
            make_callback(s, org="org_b", scheduled_at=now - timedelta(seconds=1))
        upsert(s, "org_b", now=now, max_concurrent=3)
    meter = Meter()
    provider = Provider(meter).start()
    dialer = SpekoDialer(
        provider.url, provider.api_key, connect_timeout=2, read_timeout=5, pool_size=16
    )
    pacing = Pacing(window=Window(0, DAY_MINUTES), max_concurrent=4, max_concurrent_per_number=2)
    policy = DispatchPolicy(pacing=pacing)
    d = Dispatcher(pg_sessions, SystemClock(), dialer, policy)
    work: queue.Queue[str] = queue.Queue()
    stop = threading.Event()

    def publish(ids: Sequence[str]) -> None:
        for cid in ids:
            work.put(cid)

    def poller() -> None:
        while not stop.is_set():
            poll(pg_sessions, SystemClock(), publish, limits=PollLimits(5, 100), policy=policy)
            time.sleep(0.01)

    def worker() -> None:
        while not stop.is_set():
            try:
                cid = work.get(timeout=0.05)
            except queue.Empty:
                continue
            dispatch(d, cid, manual=False)

    threads = [threading.Thread(target=poller) for _ in range(3)]
    threads += [threading.Thread(target=worker) for _ in range(12)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            with pg_sessions() as s:
                left = s.scalar(select(func.count()).where(Callback.status != Status.DISPATCHED))
            if left == 0:
                break
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join()
        provider.stop()
        dialer.close()
    assert left == 0
    assert provider.duplicates == 0
    print(f"\ncaps: peak in flight at the provider {dict(meter.peak)}")
    assert meter.peak["org:org_a"] <= 4
    assert meter.peak["org:org_b"] <= 3
    assert all(meter.peak[f"num:pn{i}"] <= 2 for i in range(3))
    assert meter.peak["org:org_a"] >= 2, "the test did race"
