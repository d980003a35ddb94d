"""Races on one callback from parallel clients: exactly one wins, the loser gets 409, and a
cancelled callback is never dialed (the dial goes through the real dispatch path to the
provider stand-in)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.integration.api.conftest import NOW, FixedClock, Keys, bearer
from tests.support.broker import queued_dispatches
from tests.support.factories import make_callback
from tests.support.provider import Provider
from worker.claims import claim_due
from worker.db.models import Callback
from worker.dialer.speko import SpekoDialer
from worker.dispatch import Dispatcher, dispatch
from worker.policy import DispatchPolicy
from worker.status import Status

ROUNDS = 15
LEASE = timedelta(minutes=5)


@pytest.fixture
def dispatcher(
    pg_sessions: sessionmaker[Session], provider: Provider, clock: FixedClock
) -> Iterator[Dispatcher]:
    dialer = SpekoDialer(
        provider.url, provider.api_key, connect_timeout=2, read_timeout=5, pool_size=4
    )
    yield Dispatcher(pg_sessions, clock, dialer, DispatchPolicy())
    dialer.close()


def race(
    first: Callable[[], Any], second: Callable[[], Any], head_start: float = 0.0
) -> tuple[Any, Any]:
    """Run both at once; ``head_start`` delays ``first`` so a sweep of rounds covers both
    orders (an HTTP request takes longer to reach the database than a direct claim)."""
    barrier = threading.Barrier(2)

    def go(fn: Callable[[], Any], delay: float) -> Any:
        barrier.wait()
        time.sleep(delay)
        return fn()

    with ThreadPoolExecutor(2) as pool:
        a, b = pool.submit(go, first, head_start), pool.submit(go, second, 0.0)
        return a.result(), b.result()


def status_of(sessions: sessionmaker[Session], callback_id: str) -> Status:
    with sessions() as s:
        cb = s.get(Callback, callback_id)
        assert cb is not None
        return Status(cb.status)


def dialed_ids(provider: Provider) -> set[str]:
    return {r.body["metadata"]["callback_id"] for r in provider.requests}


def test_cancel_vs_poller_claim(
    client: TestClient,
    keys: Keys,
    pg_sessions: sessionmaker[Session],
    dispatcher: Dispatcher,
    provider: Provider,
) -> None:
    cancelled, claimed = [], []
    for n in range(ROUNDS):
        with pg_sessions.begin() as s:
            cb_id = make_callback(s, scheduled_at=NOW - timedelta(minutes=1)).id

        def poll() -> list[str]:
            with pg_sessions.begin() as s:
                return claim_due(s, now=NOW, batch_size=10, lease=LEASE)

        def cancel(cb_id: str = cb_id) -> Any:
            return client.post(f"/v1/callbacks/{cb_id}/cancel", headers=bearer(keys.a))

        got, r = race(poll, cancel, head_start=(n % 5) * 0.002)
        if r.status_code == 200:
            assert got == []
            assert status_of(pg_sessions, cb_id) == Status.CANCELLED
            cancelled.append(cb_id)
        else:
            assert r.status_code == 409
            assert "dispatching" in r.json()["error"]
            assert got == [cb_id]
            claimed.append(cb_id)
    # Every claim's message is delivered, and a stray one for each cancelled callback too.
    for cb_id in claimed + cancelled:
        dispatch(dispatcher, cb_id, manual=False)
    assert dialed_ids(provider) == set(claimed)
    assert all(status_of(pg_sessions, i) == Status.CANCELLED for i in cancelled)


def test_cancel_vs_dispatch(
    client: TestClient,
    keys: Keys,
    pg_sessions: sessionmaker[Session],
    dispatcher: Dispatcher,
    provider: Provider,
    api_redis_url: str,
) -> None:
    outcomes = []
    for _ in range(ROUNDS):
        with pg_sessions.begin() as s:
            cb_id = make_callback(s).id
        url = f"/v1/callbacks/{cb_id}"

        def cancel(url: str = url) -> Any:
            return client.post(f"{url}/cancel", headers=bearer(keys.a), json={})

        def dispatch_(url: str = url) -> Any:
            return client.post(f"{url}/dispatch", headers=bearer(keys.a), json={})

        c, d = race(cancel, dispatch_)
        assert sorted([c.status_code, d.status_code]) == [200, 409]
        if c.status_code == 200:
            assert "cancelled" in d.json()["error"]
            assert status_of(pg_sessions, cb_id) == Status.CANCELLED
        else:
            assert "dispatching" in c.json()["error"]
            assert d.json()["status"] == "dispatching"
        outcomes.append((cb_id, c.status_code == 200))
    cancelled = {i for i, won in outcomes if won}
    dispatched = {i for i, won in outcomes if not won}
    queued = [cb_id for _, ((cb_id,),) in queued_dispatches(api_redis_url)]
    assert set(queued) == dispatched
    # Deliver every message (plus a stray one for each cancelled callback).
    for cb_id in queued + sorted(cancelled):
        dispatch(dispatcher, cb_id, manual=False)
    assert dialed_ids(provider) == dispatched
    assert all(status_of(pg_sessions, i) == Status.DISPATCHED for i in dispatched)
    assert all(status_of(pg_sessions, i) == Status.CANCELLED for i in cancelled)
