"""A batch dialed through a dialer with its own event loop (the Speko dialer on aiohttp):
every dial goes out at once, once, and each outcome lands on its own callback."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from freezegun import freeze_time
from sqlalchemy.orm import Session, sessionmaker

from tests.support.factories import T0, make_callback
from tests.support.provider import Provider, Received, Reply
from worker.clock import SystemClock
from worker.db.models import Callback
from worker.dialer.speko import SpekoDialer
from worker.dispatch import Dispatcher, dispatch_many
from worker.outcomes import Result
from worker.policy import DispatchPolicy
from worker.status import Status

BATCH = 20


@pytest.fixture
def dialer(provider: Provider) -> Iterator[SpekoDialer]:
    d = SpekoDialer(
        provider.url, provider.api_key, connect_timeout=5.0, read_timeout=10.0, pool_size=64
    )
    yield d
    d.close()


def test_a_batch_is_dialed_side_by_side_once_each_without_a_thread_per_dial(
    pg_sessions: sessionmaker[Session], provider: Provider, dialer: SpekoDialer
) -> None:
    together = threading.Barrier(BATCH, timeout=20)

    def all_at_once(_request: Received) -> Reply:
        # Each answer waits until every dial of the batch has arrived: dials made one
        # after another would break the barrier (and be answered 500).
        try:
            together.wait()
        except threading.BrokenBarrierError:
            return Reply(500)
        return Reply(200)

    provider.behaviour = all_at_once
    with freeze_time(T0 - timedelta(hours=1)), pg_sessions.begin() as s:
        ids = [make_callback(s, Status.DISPATCHING).id for _ in range(BATCH)]
    d = Dispatcher(pg_sessions, SystemClock(), dialer, DispatchPolicy(), dials=None)
    with freeze_time(T0 + timedelta(seconds=1), tick=True):
        results = dispatch_many(d, ids)
    assert results == dict.fromkeys(ids, Result.DISPATCHED)
    # No executor was given: the dials ran in the dialer's one loop thread, not a thread each.
    assert [t.name for t in threading.enumerate() if t.name.startswith("dial")] == ["dialer"]
    assert sorted(provider.calls) == sorted(f"{cid}.1" for cid in ids)
    assert provider.duplicates == 0
    with pg_sessions() as s:
        rows = s.query(Callback).filter(Callback.id.in_(ids)).all()
    assert {r.status for r in rows} == {Status.DISPATCHED}
    assert len({r.created_session_id for r in rows}) == len(ids)
