"""A bulk cancel of everything due, racing pollers that claim the same rows: every
callback ends either cancelled or claimed, never both, and the run's result accounts for
each one (changed, or not changed because a poller took it)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.support.factories import T0, make_callback
from worker.claims import claim_due
from worker.console import bulk, listing
from worker.console.bulk import Action, Wiring
from worker.console.listing import Filters
from worker.console.viewers import Viewer
from worker.db.models import Callback, CallbackEvent
from worker.status import Status

ROWS = 600
POLLERS = 3
NOW = T0 + timedelta(minutes=1)
LEASE = timedelta(minutes=5)
VIEWER = Viewer("key_a", "org_a")


class Clock:
    def now(self) -> datetime:
        return NOW


def test_bulk_cancel_against_pollers(pg_sessions: sessionmaker[Session]) -> None:
    with pg_sessions.begin() as s:
        for _ in range(ROWS):
            make_callback(s, org="org_a", scheduled_at=T0)
    wiring = Wiring(pg_sessions, Clock(), lambda _: None, LEASE, None)
    start = threading.Barrier(POLLERS + 1)
    claimed: list[str] = []

    def poll() -> None:
        start.wait()
        while True:
            with pg_sessions.begin() as s:
                got = claim_due(s, now=NOW, batch_size=20, lease=LEASE)
            if not got:
                return
            claimed.extend(got)

    def cancel_all() -> bulk.Result:
        start.wait()

        def batches() -> Iterator[list[bulk.Target]]:
            with pg_sessions() as s:
                yield from listing.matching(s, VIEWER, Filters(), batch=50)

        return bulk.run(wiring, VIEWER, Action.CANCEL, batches)

    with ThreadPoolExecutor(POLLERS + 1) as pool:
        pollers = [pool.submit(poll) for _ in range(POLLERS)]
        result = pool.submit(cancel_all).result()
        for p in pollers:
            p.result()

    with pg_sessions() as s:
        counts = dict(
            s.execute(select(Callback.status, func.count()).group_by(Callback.status)).all()
        )
        both = s.scalar(
            select(func.count()).select_from(
                select(CallbackEvent.callback_id)
                .where(CallbackEvent.to_status.in_(["cancelled", "dispatching"]))
                .group_by(CallbackEvent.callback_id)
                .having(func.count(func.distinct(CallbackEvent.to_status)) > 1)
                .subquery()
            )
        )
    assert both == 0, "a callback was both cancelled and claimed"
    assert counts.get(Status.CANCELLED, 0) == result.changed
    assert counts.get(Status.DISPATCHING, 0) == len(claimed) == len(set(claimed))
    assert result.changed + sum(result.not_changed.values()) == ROWS
    assert set(result.not_changed) <= {"it is dispatching"}
    print(f"bulk cancel {result.changed}, pollers claimed {len(claimed)} of {ROWS}")
