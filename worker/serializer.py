"""The public shape of a callback (``ScheduledCallback``): what the API and the CLI print."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import orjson

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
        # issue 14 (additive): what became of the call, null until known
        "call_outcome": cb.call_outcome,
        "call_outcome_at": rfc3339(cb.call_outcome_at),
    }


PUBLIC_FIELDS = (
    "id",
    "organization_id",
    "source_session_id",
    "created_session_id",
    "agent_id",
    "phone_number_id",
    "to_number",
    "from_number",
    "scheduled_at",
    "status",
    "reason",
    "instructions",
    "summary",
    "pipeline_config",
    "metadata",
    "failure_cause",
    "attempted_at",
    "dispatched_at",
    "cancelled_at",
    "created_at",
    "updated_at",
    "call_outcome",
    "call_outcome_at",
)
"""The ``ScheduledCallback`` fields in order; each is also the name of its column."""


def dumps(document: Any) -> bytes:
    """JSON bytes of a document of callback fields as read (datetimes in UTC, statuses).

    orjson writes what :func:`callback_view` + ``json.dumps`` would (datetimes as
    RFC 3339 with ``Z``, microseconds only when there are some) at a fraction of the cost.
    A document orjson refuses (an integer beyond 64 bits in ``metadata``) takes the slow
    path, so every stored document can still be served.
    """
    try:
        return orjson.dumps(document, option=orjson.OPT_UTC_Z)
    except orjson.JSONEncodeError:
        return json.dumps(
            document, default=_rfc3339_default, ensure_ascii=False, separators=(",", ":")
        ).encode()


def _rfc3339_default(value: object) -> str:
    if isinstance(value, datetime):
        return rfc3339(value) or ""
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
