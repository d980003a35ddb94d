"""worker.console on both backends (PostgreSQL and the embedded SQLite): the table's
pages, one callback's attempts and redial chain, the overview's series, bulk runs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from tests.support.factories import T0, make_callback
from worker.console import bulk, detail, listing, overview
from worker.console.bulk import Action, Wiring
from worker.console.listing import Filters
from worker.console.viewers import Viewer
from worker.db.models import CallbackEvent
from worker.status import Status

ORG_A = Viewer("key_a", "org_a")
OPERATOR = Viewer("key_op", None)


class Clock:
    def now(self) -> datetime:
        return T0


def test_pages_walk_every_row_once_and_scope(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        mine = {
            make_callback(s, org="org_a", created_at=T0 - timedelta(hours=2, seconds=i)).id
            for i in range(7)
        }
        theirs = make_callback(s, org="org_b").id
    seen: list[str] = []
    cursor = None
    with sessions() as s:
        while True:
            page = listing.page(s, ORG_A, Filters(), cursor=cursor, limit=3)
            seen += [r.id for r in page.rows]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert sorted(seen) == sorted(mine)
        assert len(seen) == len(set(seen))
        every = listing.page(s, OPERATOR, Filters(), limit=50)
        assert theirs in {r.id for r in every.rows}
        only_b = listing.page(s, OPERATOR, Filters(organization_id="org_b"))
        assert [r.id for r in only_b.rows] == [theirs]
        assert listing.page(s, ORG_A, Filters(organization_id="org_b")).rows == []
        assert listing.count_by_status(s, ORG_A, Filters())[Status.SCHEDULED] == 7


def test_attempts_and_redial_chain(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        first = make_callback(s, Status.DISPATCHED, org="org_a", call_outcome="no_answer")
        redial = make_callback(s, org="org_a", metadata={"redial_of": first.id, "redial_number": 1})
        for at, frm, to, said in (
            (1, "scheduled", "dispatching", {}),
            (2, "dispatching", "dispatching", {"event": "attempt started", "attempt": 1}),
            (3, "dispatching", "scheduled", {"attempt": 1, "why": "retry after 503"}),
            (4, "dispatching", "dispatching", {"event": "attempt started", "attempt": 2}),
            (5, "dispatching", "dispatched", {"attempt": 2}),
        ):
            s.add(
                CallbackEvent(
                    callback_id=first.id,
                    at=T0 + timedelta(seconds=at),
                    from_status=frm,
                    to_status=to,
                    actor="worker",
                    detail=said,
                )
            )
        first_id, redial_id = first.id, redial.id
    with sessions() as s:
        d = detail.detail(s, ORG_A, first_id)
        assert [(a.number, a.outcome, a.idempotency_key) for a in d.attempts] == [
            (1, "retry later: retry after 503", f"{first_id}.1"),
            (2, "placed", f"{first_id}.1"),
        ]
        assert [c.id for c in d.redial_chain] == [first_id, redial_id]
        assert [c.id for c in detail.detail(s, ORG_A, redial_id).redial_chain] == [
            first_id,
            redial_id,
        ]


def test_overview_series_on_either_backend(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        cb = make_callback(
            s, Status.DISPATCHED, org="org_a", scheduled_at=T0 - timedelta(minutes=30)
        )
        s.add(
            CallbackEvent(
                callback_id=cb.id,
                at=T0 - timedelta(minutes=20),
                from_status="dispatching",
                to_status="dispatching",
                actor="worker",
                detail={"event": "attempt started", "attempt": 1},
            )
        )
    with sessions() as s:
        seen = overview.overview(s, ORG_A, T0)
    busy = [m for m in seen.minutes if m.dials]
    assert len(busy) == 1
    assert round(busy[0].lag_avg or 0) == 600  # SQLite: julianday arithmetic in floats
    assert seen.counts["dispatched"] == 1


def test_bulk_cancel_reports_what_it_could_not(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        due = [make_callback(s, org="org_a").id for _ in range(3)]
        done = make_callback(s, Status.DISPATCHED, org="org_a").id
    sent: list[str] = []
    wiring = Wiring(sessions, Clock(), sent.append, timedelta(minutes=5), None)

    def batches() -> Iterator[list[bulk.Target]]:
        with sessions() as s:
            yield from listing.matching(s, ORG_A, Filters(), batch=2)

    result = bulk.run(wiring, ORG_A, Action.CANCEL, batches)
    assert result.changed == 3
    assert result.listed == [(done, "it is dispatched")]
    again = bulk.run(wiring, ORG_A, Action.CANCEL, batches)
    assert again.changed == 0
    assert again.not_changed["already cancelled"] == 3
    assert sent == []
    assert due
