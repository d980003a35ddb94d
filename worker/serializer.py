"""The public shape of a callback (``ScheduledCallback``): what the API and the CLI print."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from worker.db.models import Callback


def rfc3339(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def callback_view(cb: Callback) -> dict[str, Any]:
    """Every ``ScheduledCallback`` field, nulls included, and nothing internal."""
    return {
        "id": cb.id,
        "organization_id": cb.organization_id,
        "source_session_id": cb.source_session_id,
        "created_session_id": cb.created_session_id,
        "agent_id": cb.agent_id,
        "phone_number_id": cb.phone_number_id,
        "to_number": cb.to_number,
        "from_number": cb.from_number,
        "scheduled_at": rfc3339(cb.scheduled_at),
        "status": str(cb.status),
        "reason": cb.reason,
        "instructions": cb.instructions,
        "summary": cb.summary,
        "pipeline_config": cb.pipeline_config,
        "metadata": cb.metadata_,
        "failure_cause": cb.failure_cause,
        "attempted_at": rfc3339(cb.attempted_at),
        "dispatched_at": rfc3339(cb.dispatched_at),
        "cancelled_at": rfc3339(cb.cancelled_at),
        "created_at": rfc3339(cb.created_at),
        "updated_at": rfc3339(cb.updated_at),
    }
