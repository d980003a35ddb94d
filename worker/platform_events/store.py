"""Storing a verified delivery, once per ``webhook-id``, before it is acknowledged."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from worker.db.models import PlatformEvent
from worker.validation import StorableStr, check_json_tree, describe


class NotAnEvent(ValueError):
    """The body is not ``{"type", "timestamp", "data"}``; the message says why."""


class Event(BaseModel):
    """The Standard Webhooks envelope; other top-level keys are kept, not interpreted."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: Annotated[StorableStr, Field(min_length=1, max_length=128)]
    timestamp: Annotated[StorableStr, Field(min_length=1, max_length=64)]
    data: dict[str, Any]

    @field_validator("data")
    @classmethod
    def _storable(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_json_tree(value)
        return value


def parse_event(value: object) -> Event:
    if not isinstance(value, dict):
        raise NotAnEvent("the body must be a JSON object with type, timestamp and data")
    try:
        check_json_tree(value)
        return Event.model_validate(value)
    except ValidationError as exc:
        raise NotAnEvent("; ".join(describe(exc))) from None
    except ValueError as exc:
        raise NotAnEvent(str(exc)) from None


def store_event(
    session: Session, webhook_id: str, payload: Mapping[str, Any], event_type: str, *, now: datetime
) -> bool:
    """Insert the delivery unless its ``webhook_id`` is stored already; True if new.

    ``INSERT ... ON CONFLICT DO NOTHING``: two copies racing store one row, and neither
    fails, so both are acknowledged.
    """
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(PlatformEvent)
        .values(
            webhook_id=webhook_id,
            type=event_type,
            received_at=now,
            payload=dict(payload),
        )
        .on_conflict_do_nothing(index_elements=["webhook_id"])
        .returning(PlatformEvent.id)
    )
    return session.execute(statement).scalar_one_or_none() is not None
