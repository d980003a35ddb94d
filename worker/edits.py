"""The admin API's create and edit of one callback (issue 16): plain functions over a
session and a time, each write one move of :mod:`worker.lifecycle`.

- :func:`create_one`: ``POST /v1/callbacks``, through :func:`worker.creation.schedule`
  (the CLI's and the pipeline's path), so its validation and idempotency key are theirs.
- :func:`edit`: ``PATCH /v1/callbacks/{id}``, only while ``scheduled``, as the
  :func:`worker.lifecycle.reschedule` move.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from sqlalchemy.orm import Session

from worker import lifecycle
from worker.actions import (
    RACE_RETRIES,
    CallbackNotFound,
    StatusConflict,
    get_callback,
    mask_number,
)
from worker.creation import Scheduled, refuse_expired, schedule
from worker.datetimes import When
from worker.db.models import Callback
from worker.serializer import rfc3339
from worker.status import Status
from worker.validation import InvalidCallback, Metadata, NewCallback, Text, describe

log = logging.getLogger(__name__)

EDITABLE = ("scheduled_at", "reason", "instructions", "summary", "metadata")


def create_one(
    session: Session,
    organization_id: str,
    fields: Mapping[str, Any],
    *,
    idempotency_key: str | None,
    now: datetime,
    actor: str,
    lateness: timedelta | None,
) -> tuple[Callback, bool]:
    """Create one callback for ``organization_id`` from a body in the API's field names;
    returns it and whether it was a replay (same key, same callback).

    Raises ``InvalidCallback`` (bad fields, or already past its lateness) and
    ``worker.creation.IdempotencyConflict`` (the key names another callback).
    """
    given_org = fields.get("organization_id", organization_id)
    if given_org != organization_id:
        raise InvalidCallback(
            ["organization_id: must be the API key's own organization (or left out)"]
        )
    body_key = fields.get("idempotency_key")
    if idempotency_key is not None and body_key is not None and body_key != idempotency_key:
        raise InvalidCallback(
            ["idempotency_key: differs from the Idempotency-Key header; give one of them"]
        )
    data = {**fields, "organization_id": organization_id}
    if idempotency_key is not None:
        data["idempotency_key"] = idempotency_key
    try:
        item = NewCallback.model_validate(data)
    except ValidationError as exc:
        raise InvalidCallback(describe(exc)) from None
    done: Scheduled = schedule(session, [item], now=now, actor=actor, lateness=lateness)
    cb, replayed = done[0], done.replayed == 1
    log.info(
        "callback %s (to %s) %s by %s",
        cb.id,
        mask_number(cb.to_number),
        "replayed (same Idempotency-Key and body)" if replayed else "created",
        actor,
        extra={"callback_id": cb.id, "organization_id": cb.organization_id, "actor": actor},
    )
    return cb, replayed


class Edit(BaseModel):
    """``PATCH`` body: the fields to change, and only those (``null`` clears a text)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    scheduled_at: When | None = None
    reason: Text | None = None
    instructions: Text | None = None
    summary: Text | None = None
    metadata: Metadata | None = None

    @field_validator("scheduled_at", "metadata", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("may not be null (leave it out to keep it)")
        return value


def parse_edit(data: object) -> Edit:
    if not isinstance(data, dict):
        raise InvalidCallback(["body: must be a JSON object"])
    try:
        edit_ = Edit.model_validate(data)
    except ValidationError as exc:
        raise InvalidCallback(describe(exc)) from None
    if not edit_.model_fields_set:
        raise InvalidCallback([f"body: nothing to change: give one of {', '.join(EDITABLE)}"])
    return edit_


def edit(
    session: Session,
    organization_id: str,
    callback_id: str,
    changes: Edit,
    *,
    now: datetime,
    actor: str,
) -> Callback:
    """Change a ``scheduled`` callback; :class:`StatusConflict` naming its status otherwise.

    A new ``scheduled_at`` makes it due then (``due_at``) and keeps the lateness it was
    created with (``expires_at`` moves by as much as ``scheduled_at``); one already past
    that lateness is refused as at creation. The write is conditional on ``scheduled``
    and on the ``scheduled_at`` read here, so a claim by the poller in between wins
    cleanly: this edit then changes nothing and answers with the status it lost to.
    """
    given = changes.model_fields_set
    for _ in range(RACE_RETRIES):
        current = get_callback(session, organization_id, callback_id)
        session.expunge(current)
        if current.status != Status.SCHEDULED:
            raise StatusConflict("reschedule", Status(current.status))
        values: dict[str, Any] = {}
        why: dict[str, Any] = {"why": "edited", "fields": sorted(given)}
        if changes.scheduled_at is not None:
            at = changes.scheduled_at
            expires_at = current.expires_at
            if expires_at is not None:
                expires_at = at + (expires_at - current.scheduled_at)
                if expires_at <= now:
                    allowed = current.expires_at - current.scheduled_at  # type: ignore[operator]
                    _refuse_late(at, allowed, now)
            values |= {"scheduled_at": at, "due_at": at, "expires_at": expires_at}
            why["scheduled_at"] = {
                "from": rfc3339(current.scheduled_at),
                "to": rfc3339(at),
            }
        for name in ("reason", "instructions", "summary"):
            if name in given:
                values[name] = getattr(changes, name)
        if "metadata" in given:
            values["metadata_"] = changes.metadata
        cb = lifecycle.reschedule(
            session,
            callback_id,
            organization_id=organization_id,
            seen_scheduled_at=current.scheduled_at,
            values=values,
            now=now,
            actor=actor,
            why=why,
        )
        if cb is not None:
            return cb
    current = get_callback(session, organization_id, callback_id)
    raise StatusConflict("reschedule", Status(current.status))


def _refuse_late(at: datetime, allowed: timedelta, now: datetime) -> None:
    item = NewCallback(organization_id="-", to_number="+12015550100", scheduled_at=at)
    refuse_expired([item], now=now, lateness=allowed)


__all__ = ["EDITABLE", "CallbackNotFound", "Edit", "create_one", "edit", "parse_edit"]
