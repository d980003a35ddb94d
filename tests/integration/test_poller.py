"""A poll tick: what it claims and what it publishes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.support.factories import T0, make_callback
from worker.db.models import Callback
from worker.policy import DispatchPolicy
from worker.poller import PollLimits, poll
from worker.status import Status

ALL_DAY = DispatchPolicy()  # the bare Pacing(): always open, no caps


class SteppingClock:
    """Each reading is one second after the last: time passes while a tick runs."""

    def __init__(self, start: datetime) -> None:
        self._next = start

    def now(self) -> datetime:
        now, self._next = self._next, self._next + timedelta(seconds=1)
        return now


def test_a_tick_claims_what_was_due_when_it_began_in_full_batches(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as s:
        due = {make_callback(s, scheduled_at=T0 - timedelta(seconds=1)).id for _ in range(5)}
        # Come due while the tick runs: the next tick's, or the tick would chase arrivals.
        for i in range(1, 6):
            make_callback(s, scheduled_at=T0 + timedelta(seconds=i))
    published: list[list[str]] = []

    def publish(ids: Sequence[str]) -> None:
        published.append(list(ids))

    limits = PollLimits(batch_size=2, max_per_tick=100)
    assert poll(sessions, SteppingClock(T0), publish, limits=limits, policy=ALL_DAY) == 5
    assert [len(ids) for ids in published] == [2, 2, 1]
    assert {cid for ids in published for cid in ids} == due
    with sessions() as s:
        claimed = s.scalars(select(Callback.id).where(Callback.status == Status.DISPATCHING))
        assert set(claimed) == due
