"""Creating callbacks: the one service function behind the CLI, the task and the API."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from worker import lifecycle
from worker.db.models import Callback
from worker.ids import new_callback_id
from worker.validation import NewCallback

DEFAULT_LATENESS = timedelta(hours=4)


def expiry(item: NewCallback, default: timedelta | None) -> datetime | None:
    if item.max_lateness_seconds is not None:
        return item.scheduled_at + timedelta(seconds=item.max_lateness_seconds)
    return None if default is None else item.scheduled_at + default


def schedule(
    session: Session,
    new: Sequence[NewCallback],
    *,
    now: datetime,
    actor: str,
    lateness: timedelta | None = DEFAULT_LATENESS,
) -> list[Callback]:
    """Insert every callback (all or nothing: the caller's transaction) with its first event.

    ``lateness``: how long after ``scheduled_at`` a callback may still be placed, unless it
    says otherwise; ``None``: never expires.
    """
    fields = [
        {
            "id": new_callback_id(),
            "organization_id": item.organization_id,
            "source_session_id": item.source_session_id,
            "agent_id": item.agent_id,
            "phone_number_id": item.phone_number_id,
            "to_number": item.to_number,
            "from_number": item.from_number,
            "scheduled_at": item.scheduled_at,
            "expires_at": expiry(item, lateness),
            "reason": item.reason,
            "instructions": item.instructions,
            "summary": item.summary,
            "pipeline_config": item.pipeline_config,
            "metadata_": item.metadata,
        }
        for item in new
    ]
    return lifecycle.create(session, fields, now=now, actor=actor)
