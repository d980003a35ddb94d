"""Processed platform events older than PLATFORM_EVENT_RETENTION are removed in bounded
batches that never wait on a row another transaction holds; unprocessed events stay."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from worker.celery.config import POLL_QUEUE, celery_config
from worker.db.models import PlatformEvent
from worker.platform_events.retention import purge_processed
from worker.platform_events.store import store_event
from worker.settings import load_settings

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
RETENTION = timedelta(days=30)


class At:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


def _event(
    sessions: sessionmaker[Session], webhook_id: str, *, received: datetime, processed: bool
) -> None:
    with sessions.begin() as s:
        store_event(s, webhook_id, {"type": "call.hangup"}, "call.hangup", now=received)
        if processed:
            s.execute(
                update(PlatformEvent)
                .where(PlatformEvent.webhook_id == webhook_id)
                .values(processed_at=received + timedelta(seconds=1), result="ignored")
            )


def _left(sessions: sessionmaker[Session]) -> list[str]:
    with sessions() as s:
        return sorted(s.scalars(select(PlatformEvent.webhook_id)))


def test_only_processed_events_past_the_retention_are_removed(
    pg_sessions: sessionmaker[Session],
) -> None:
    old = NOW - RETENTION - timedelta(hours=1)
    for n in range(5):
        _event(pg_sessions, f"old_{n}", received=old, processed=True)
    _event(pg_sessions, "old_unprocessed", received=old - timedelta(days=300), processed=False)
    _event(pg_sessions, "recent", received=NOW - RETENTION + timedelta(hours=1), processed=True)
    # batch=2: three transactions remove the five.
    assert purge_processed(pg_sessions, At(NOW), retention=RETENTION, batch=2) == 5
    assert _left(pg_sessions) == ["old_unprocessed", "recent"]
    assert purge_processed(pg_sessions, At(NOW), retention=RETENTION) == 0


def test_one_run_is_bounded_and_the_next_goes_on(pg_sessions: sessionmaker[Session]) -> None:
    old = NOW - RETENTION - timedelta(days=1)
    for n in range(7):
        _event(pg_sessions, f"old_{n}", received=old, processed=True)
    clock = At(NOW)
    assert purge_processed(pg_sessions, clock, retention=RETENTION, batch=2, max_batches=2) == 4
    assert purge_processed(pg_sessions, clock, retention=RETENTION, batch=2, max_batches=2) == 3
    assert _left(pg_sessions) == []


def test_a_row_held_by_another_transaction_is_skipped_not_waited_for(
    pg_sessions: sessionmaker[Session],
) -> None:
    old = NOW - RETENTION - timedelta(days=1)
    for name in ("held", "free_1", "free_2"):
        _event(pg_sessions, name, received=old, processed=True)
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        with pg_sessions.begin() as s:
            s.execute(
                select(PlatformEvent).where(PlatformEvent.webhook_id == "held").with_for_update()
            ).one()
            locked.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(10)
        removed: list[int] = []
        purger = threading.Thread(
            target=lambda: removed.append(
                purge_processed(pg_sessions, At(NOW), retention=RETENTION, batch=1)
            )
        )
        purger.start()
        purger.join(20)
        # Returned while the lock is still held: it skipped the row instead of waiting.
        assert not purger.is_alive()
        assert removed == [2]
        # Meanwhile the receiver's inserts go on.
        _event(pg_sessions, "new", received=NOW, processed=False)
    finally:
        release.set()
        holder.join(10)
    assert _left(pg_sessions) == ["held", "new"]
    assert purge_processed(pg_sessions, At(NOW), retention=RETENTION) == 1
    assert _left(pg_sessions) == ["new"]


def test_beat_runs_the_purge_hourly_on_the_poll_queue() -> None:
    settings = load_settings()
    config = celery_config(settings)
    entry = config["beat_schedule"]["platform-events-purge"]
    assert (entry["task"], entry["schedule"]) == ("callbacks.purge_platform_events", 3600.0)
    assert config["task_routes"]["callbacks.purge_platform_events"] == {"queue": POLL_QUEUE}
    assert settings.platform_event_retention == 30 * 86400
    assert load_settings(platform_event_retention=3600).platform_event_retention == 3600
