"""Shared pieces of the crash tests and the chaos harness: fast settings, callbacks, reads."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.support.processes import pipeline_env
from tests.support.provider import Provider
from worker.creation import schedule
from worker.db.models import Callback
from worker.status import Status
from worker.validation import NewCallback

# Short leases and intervals so a crash resolves in seconds, not minutes. The attempt
# lease is derived by the product: 4 x (connect + read timeout) + 60 s (runtime.py).
FAST = {
    "POLL_INTERVAL": "0.2",
    "REAPER_INTERVAL": "1",
    "CLAIM_LEASE": "3",
    "DIALER_CONNECT_TIMEOUT": "0.5",
    "DIALER_READ_TIMEOUT": "1",
    "RETRY_MAX_ATTEMPTS": "3",
    "RETRY_BASE_DELAY": "0.2",
    "RETRY_MAX_DELAY": "1",
    "WORKER_CONCURRENCY": "4",
    "LOG_LEVEL": "INFO",
    # Real time at any hour: an all-day calling window, so nothing is deferred to morning.
    "CALLING_WINDOW_START": "00:00",
    "CALLING_WINDOW_END": "24:00",
}

FINAL = (Status.DISPATCHED, Status.FAILED, Status.CANCELLED)


def attempt_lease(env: Mapping[str, str]) -> float:
    """What ``worker.runtime.dispatch_policy`` makes of these settings, in seconds."""
    longest = float(env["DIALER_CONNECT_TIMEOUT"]) + float(env["DIALER_READ_TIMEOUT"])
    return longest * 4 + 60


def worker_env(
    pg_url: str, broker_url: str, provider: Provider, workdir: Path, **overrides: str
) -> dict[str, str]:
    return pipeline_env(pg_url, broker_url, provider, workdir, **{**FAST, **overrides})


def schedule_callbacks(
    sessions: sessionmaker[Session],
    count: int,
    *,
    start: datetime | None = None,
    spread: timedelta = timedelta(0),
    org: str = "org_crash",
    chunk: int = 1_000,
) -> list[str]:
    """Create ``count`` callbacks through the real service, due from ``start`` over ``spread``."""
    now = datetime.now(UTC)
    first = start or now - timedelta(seconds=1)
    step = spread / count if count else timedelta(0)
    ids: list[str] = []
    for offset in range(0, count, chunk):
        new = [
            NewCallback(
                organization_id=org,
                to_number=f"+1201555{i % 10_000:04d}",
                scheduled_at=first + step * i,
                agent_id="agent_crash",
                reason=f"crash test {i}",
            )
            for i in range(offset, min(count, offset + chunk))
        ]
        with sessions.begin() as session:
            ids += [c.id for c in schedule(session, new, now=now, actor="test")]
    return ids


def rows(sessions: sessionmaker[Session], ids: Iterable[str] | None = None) -> dict[str, Callback]:
    query = select(Callback)
    if ids is not None:
        query = query.where(Callback.id.in_(list(ids)))
    with sessions() as session:
        return {cb.id: cb for cb in session.scalars(query)}


def count_by_status(sessions: sessionmaker[Session]) -> dict[Status, int]:
    with sessions() as session:
        found = session.execute(select(Callback.status, func.count()).group_by(Callback.status))
        return {Status(status): n for status, n in found}


def unfinished(sessions: sessionmaker[Session], ids: Iterable[str] | None = None) -> int:
    query = select(func.count()).where(Callback.status.not_in(FINAL))
    if ids is not None:
        query = query.where(Callback.id.in_(list(ids)))
    with sessions() as session:
        return session.scalar(query) or 0
