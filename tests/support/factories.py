"""Factories: a callback in any status, in one line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from worker.creation import schedule
from worker.db.models import Callback
from worker.status import Status
from worker.validation import NewCallback

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def make_callback(
    session: Session,
    status: Status = Status.SCHEDULED,
    *,
    org: str = "org_a",
    to: str = "+12015551234",
    scheduled_at: datetime = T0,
    created_at: datetime | None = None,
    **state: Any,
) -> Callback:
    """Create a callback through the real service, then put it in ``status`` with ``state``.

    ``state`` may set any column (public or internal), e.g. ``attempts=2``; anything that
    :class:`NewCallback` takes (``reason``, ``metadata``, ...) is passed to creation instead.
    """
    fields = set(NewCallback.model_fields)
    new = {k: state.pop(k) for k in list(state) if k in fields}
    now = created_at or scheduled_at - timedelta(hours=1)
    (cb,) = schedule(
        session,
        [NewCallback(organization_id=org, to_number=to, scheduled_at=scheduled_at, **new)],
        now=now,
        actor="test",
    )
    if status is Status.DISPATCHING:
        state.setdefault("lease_expires_at", scheduled_at + timedelta(minutes=5))
    if status is Status.DISPATCHED:
        state.setdefault("dispatched_at", scheduled_at)
        state.setdefault("created_session_id", f"sess_{cb.id}")
    if status is Status.CANCELLED:
        state.setdefault("cancelled_at", scheduled_at)
    if status is Status.FAILED:
        state.setdefault("failure_cause", "test: made failed")
    if status is not Status.SCHEDULED or state:
        session.execute(
            update(Callback)
            .where(Callback.id == cb.id)
            .values(status=status, **state)
            .execution_options(synchronize_session=False)
        )
    session.flush()
    session.refresh(cb)
    return cb
