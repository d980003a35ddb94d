"""Create, edit and cursor pages as plain functions, on both databases (the embedded
default runs the API on SQLite)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.support.factories import T0, make_callback
from worker import edits, lifecycle
from worker.actions import StatusConflict
from worker.api import reads
from worker.api.cursors import BadCursor
from worker.creation import IdempotencyConflict
from worker.status import Status

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def test_edit_moves_time_and_due_and_expiry_together(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        cb = make_callback(s, max_lateness_seconds=600)
    later = T0 + timedelta(hours=3)
    with sessions.begin() as s:
        got = edits.edit(s, "org_a", cb.id, edits.Edit(scheduled_at=later), now=NOW, actor="t")
        assert (got.scheduled_at, got.due_at) == (later, later)
        # Its own lateness (10 minutes), not the default's.
        assert got.expires_at == later + timedelta(minutes=10)


def test_an_edit_loses_to_a_claim_that_committed_after_it_read(
    sessions: sessionmaker[Session],
) -> None:
    """The conditional write decides: the row read as scheduled, then claimed, is not
    changed by the edit's write (it names the scheduled_at and status it read)."""
    with sessions.begin() as s:
        cb = make_callback(s)
    with sessions.begin() as s:
        claim = lifecycle.Claim(NOW, timedelta(minutes=5), "poller", None)
        assert lifecycle.claim_one(s, cb.id, claim) is not None
    with sessions.begin() as s:
        moved = lifecycle.reschedule(
            s, cb.id, organization_id="org_a", seen_scheduled_at=T0,
            values={"reason": "x"}, now=NOW, actor="t", why={"why": "edited"},
        )  # fmt: skip
        assert moved is None
    with sessions.begin() as s, pytest.raises(StatusConflict) as err:
        edits.edit(s, "org_a", cb.id, edits.Edit(reason="x"), now=NOW, actor="t")
    assert err.value.current == Status.DISPATCHING


def test_create_one_replays_and_conflicts(sessions: sessionmaker[Session]) -> None:
    fields = {"to_number": "+12015551234", "scheduled_at": T0.isoformat()}
    with sessions.begin() as s:
        first, replayed = edits.create_one(
            s, "org_a", fields, idempotency_key="k", now=NOW, actor="t", lateness=None
        )
        assert not replayed
    with sessions.begin() as s:
        again, replayed = edits.create_one(
            s, "org_a", fields, idempotency_key="k", now=NOW, actor="t", lateness=None
        )
        assert replayed
        assert again.id == first.id
    with sessions.begin() as s, pytest.raises(IdempotencyConflict):
        edits.create_one(
            s, "org_a", {**fields, "reason": "other"}, idempotency_key="k",
            now=NOW, actor="t", lateness=None,
        )  # fmt: skip


def test_pages_by_cursor(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        ids = [make_callback(s, created_at=NOW - timedelta(seconds=i % 3)).id for i in range(8)]
    engine = sessions.kw["bind"]
    seen: list[str] = []
    cursor = None
    cursors: list[str] = []
    with engine.connect() as conn:
        while True:
            page = reads.page_json(conn, "org_a", reads.ListFilter(), limit=3, cursor=cursor)
            body = json.loads(page)
            seen += [c["id"] for c in body["callbacks"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
            cursors.append(cursor)
        assert len(cursors) == 2
        assert sorted(seen) == sorted(ids)
        assert len(seen) == len(set(seen))
        with pytest.raises(BadCursor):
            reads.page_json(conn, "org_b", reads.ListFilter(), cursor=cursors[0])
