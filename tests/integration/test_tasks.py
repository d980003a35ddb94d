"""The Celery tasks as thin adapters: run in-process (``apply``) on the embedded SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from freezegun import freeze_time
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.support.broker import queued_dispatches
from tests.support.factories import T0, make_callback
from worker.celery.app import CallbacksCelery, create_celery
from worker.creation import IdempotencyConflict
from worker.db.migrate import upgrade
from worker.db.models import Callback
from worker.settings import Settings
from worker.status import Status
from worker.validation import InvalidCallback


@pytest.fixture
def app(tmp_path: Path) -> Iterator[CallbacksCelery]:
    settings = Settings(data_dir=tmp_path)
    upgrade(settings.effective_database_url)
    app = create_celery(settings)
    yield app
    app.runtime.close()


@freeze_time("2026-03-02T14:00:00Z")  # the fixed dates below must be ahead of "now"
def test_schedule_task_creates_one_or_many_all_or_nothing(app: CallbacksCelery) -> None:
    good = {
        "organization_id": "o",
        "to_number": "+12015551234",
        "scheduled_at": "2026-03-02T15:00:00Z",
    }
    one = app.tasks["callbacks.schedule"].apply(args=(good,)).get()
    many = app.tasks["callbacks.schedule"].apply(args=([good, good],)).get()
    assert len(one) == 1
    assert len(many) == 2
    bad = app.tasks["callbacks.schedule"].apply(args=([good, {**good, "to_number": "5"}],))
    assert isinstance(bad.result, InvalidCallback)
    assert "callback 1: to_number" in str(bad.result)
    with app.runtime.sessions() as s:
        assert len(s.scalars(select(Callback.id)).all()) == 3


@freeze_time("2026-03-02T14:00:00Z")
def test_schedule_task_refuses_the_already_too_late_and_honours_idempotency_keys(
    app: CallbacksCelery,
) -> None:
    """Issue 11, items 2 and 16: the pipeline's path, like the CLI's."""
    task = app.tasks["callbacks.schedule"]
    good = {
        "organization_id": "o",
        "to_number": "+12015551234",
        "scheduled_at": "2026-03-02T15:00Z",
    }
    late = {**good, "scheduled_at": "2020-01-01T09:00:00Z"}
    refused = task.apply(args=([good, late],))
    assert isinstance(refused.result, InvalidCallback)
    assert "callback 1: scheduled_at: 2020-01-01T09:00:00+00:00 is more than" in str(refused.result)
    keyed = {**good, "idempotency_key": "analysis-42"}
    first = task.apply(args=(keyed,)).get()
    assert task.apply(args=(keyed,)).get() == first
    conflict = task.apply(args=({**keyed, "reason": "changed"},))
    assert isinstance(conflict.result, IdempotencyConflict)
    with app.runtime.sessions() as s:
        assert len(s.scalars(select(Callback.id)).all()) == 1


@freeze_time("2026-03-02T15:00:00Z")  # 10:00 in New Jersey: inside the calling window
def test_dispatch_task_places_a_callback_that_is_not_due(app: CallbacksCelery) -> None:
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    (cid,) = (
        app.tasks["callbacks.schedule"]
        .apply(args=({"organization_id": "o", "to_number": "+12015551234", "scheduled_at": later},))
        .get()
    )
    assert app.tasks["callbacks.dispatch"].apply(args=(cid,)).get() == "dispatched"
    assert app.tasks["callbacks.dispatch"].apply(args=(cid,)).get() == "skipped"
    with app.runtime.sessions() as s:
        row = s.get_one(Callback, cid)
    assert row.status is Status.DISPATCHED
    assert row.created_session_id == f"logdialer-no-call-{cid}.1"


@freeze_time(T0 + timedelta(seconds=1))
def test_poll_publishes_claimed_callbacks_in_batches_the_worker_dispatches(
    pg_url: str, pg_sessions: sessionmaker[Session], redis_url: str
) -> None:
    settings = Settings(
        database_url=pg_url,
        broker_url=redis_url,
        # PostgreSQL without a provider: the log dialer must be asked for (issue 11, item 1).
        dialer="log",
        dispatch_batch_size=10,
        calling_window_start="00:00",
        calling_window_end="24:00",
    )
    with pg_sessions.begin() as s:
        due = {make_callback(s).id for _ in range(25)}
    app = create_celery(settings)
    try:
        assert app.tasks["callbacks.poll"].apply().get() == 25
        queued = queued_dispatches(redis_url)
        assert [name for name, _ in queued] == ["callbacks.dispatch_claimed"] * 3
        batches = [ids for _, (ids,) in queued]
        assert sorted(len(ids) for ids in batches) == [5, 10, 10]
        assert {cid for ids in batches for cid in ids} == due
        first = batches[0]
        results = app.tasks["callbacks.dispatch_claimed"].apply(args=(first,)).get()
        assert results == dict.fromkeys(first, "dispatched")
        # A bare id, as the API sent it before this release: still accepted for one.
        again = app.tasks["callbacks.dispatch_claimed"].apply(args=(first[0],)).get()
        assert again == {first[0]: "skipped"}
    finally:
        app.runtime.close()


@freeze_time("2026-03-02T15:00:00Z")
def test_dispatch_task_refuses_a_failed_callback_of_unknown_outcome_and_says_why(
    app: CallbacksCelery, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 17 item 3: the one-argument task keeps its contract; a failure whose call may
    have rung is skipped, logged with the way to retry it (the API, with force)."""
    cause = "outcome unknown: attempt 1 started but never reported back"
    with app.runtime.sessions.begin() as s:
        cid = make_callback(s, Status.FAILED, attempts=1, failure_cause=cause).id
    assert app.tasks["callbacks.dispatch"].apply(args=(cid,)).get() == "skipped"
    with app.runtime.sessions() as s:
        cb = s.get_one(Callback, cid)
        assert (cb.status, cb.attempts, cb.failure_cause) == (Status.FAILED, 1, cause)
    refused = [r.getMessage() for r in caplog.records if cid in r.getMessage()]
    assert any('{"force": true}' in m and "may already have been called" in m for m in refused)


@freeze_time(T0 + timedelta(seconds=1))
def test_a_batch_that_ends_tops_the_claim_window_up(
    pg_url: str, pg_sessions: sessionmaker[Session], redis_url: str
) -> None:
    """Issue 13: beat's tick claims no more than CLAIM_WINDOW; a worker finishing a batch
    claims the room its batch made, between ticks."""
    settings = Settings(
        database_url=pg_url,
        broker_url=redis_url,
        dialer="log",
        dispatch_batch_size=10,
        claim_window=20,
        calling_window_start="00:00",
        calling_window_end="24:00",
    )
    with pg_sessions.begin() as s:
        for _ in range(45):
            make_callback(s)
    app = create_celery(settings)
    try:
        assert app.tasks["callbacks.poll"].apply().get() == 20
        assert app.tasks["callbacks.poll"].apply().get() == 0  # the window is full
        (first, _) = [ids for _, (ids,) in queued_dispatches(redis_url)]
        results = app.tasks["callbacks.dispatch_claimed"].apply(args=(first,)).get()
        assert results == dict.fromkeys(first, "dispatched")
        queued = [ids for _, (ids,) in queued_dispatches(redis_url)]
        assert len(queued) == 3  # the two from the tick, and the top-up's
        assert sum(len(ids) for ids in queued) == 30
        with pg_sessions() as s:
            claimed = s.scalars(
                select(Callback.id).where(Callback.status == Status.DISPATCHING)
            ).all()
        assert len(claimed) == 20
    finally:
        app.runtime.close()
