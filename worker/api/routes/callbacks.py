"""``/v1/callbacks``: list, get, cancel, dispatch — thin adapters over :mod:`worker.admin`."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError, field_validator

from worker import admin
from worker.api.auth import Caller
from worker.api.deps import Context
from worker.api.errors import ValidationFailed
from worker.status import Status
from worker.views import callback_view

router = APIRouter(prefix="/v1/callbacks")

MAX_BODY = 64 * 1024
"""A cancel body is one short string; anything far larger is not a cancel request."""


class CancelBody(BaseModel):
    reason: str | None = Field(default=None, max_length=500)

    @field_validator("reason", mode="before")
    @classmethod
    def _string_when_given(cls, value: object) -> object:
        # The contract says a string; an explicit null is not one (absent is fine).
        if value is None:
            raise ValueError("must be a string")
        return value


async def cancel_body(request: Request, _: Caller) -> CancelBody:
    """Parsed after the key is checked (depends on it), so bad auth is 401, never 400.

    Optional: SDKs send ``{}``; an empty body means no reason.
    """
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise ValidationFailed("Invalid request body: too large")
    if not raw.strip():
        return CancelBody()
    try:
        data = json.loads(raw)
    except ValueError:
        raise ValidationFailed("Invalid request body: malformed JSON") from None
    try:
        return CancelBody.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            ".".join(str(p) for p in e["loc"]) + f": {e['msg']}" if e["loc"] else e["msg"]
            for e in exc.errors()
        )
        raise ValidationFailed(f"Invalid request body: {problems}") from None


@router.get("")
def list_callbacks(
    caller: Caller,
    ctx: Context,
    status: Status | None = None,
    source_session_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 25,
) -> JSONResponse:
    with ctx.sessions() as session:
        rows = admin.list_callbacks(
            session,
            caller.organization_id,
            status=status,
            source_session_id=source_session_id,
            limit=limit,
        )
        return JSONResponse({"callbacks": [callback_view(cb) for cb in rows]})


@router.get("/{id}")
def get_callback(id: str, caller: Caller, ctx: Context) -> JSONResponse:
    with ctx.sessions() as session:
        cb = admin.get_callback(session, caller.organization_id, id)
        return JSONResponse(callback_view(cb))


@router.post("/{id}/cancel")
def cancel_callback(
    id: str,
    caller: Caller,
    ctx: Context,
    body: Annotated[CancelBody, Depends(cancel_body)],
) -> JSONResponse:
    with ctx.sessions.begin() as session:
        cb = admin.cancel(
            session,
            caller.organization_id,
            id,
            now=ctx.clock.now(),
            actor=admin.actor_for(caller.id),
            reason=body.reason,
        )
        return JSONResponse(callback_view(cb))


async def dispatch_force(request: Request, _: Caller) -> bool:
    """Extension: ``{"force": true}`` confirms re-dispatching a callback whose last outcome
    is unknown (its call may have been placed). Any other body is ignored, as before: the
    contract has none, and SDKs send ``{}``."""
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise ValidationFailed("Invalid request body: too large")
    try:
        data = json.loads(raw) if raw.strip() else {}
    except ValueError:
        return False
    if not isinstance(data, dict) or "force" not in data:
        return False
    if not isinstance(data["force"], bool):
        raise ValidationFailed("Invalid request body: force: must be true or false")
    return data["force"]


@router.post("/{id}/dispatch")
def dispatch_callback(
    id: str, caller: Caller, ctx: Context, force: Annotated[bool, Depends(dispatch_force)]
) -> JSONResponse:
    cb = admin.dispatch_now(
        ctx.sessions,
        ctx.clock,
        ctx.publish,
        caller.organization_id,
        id,
        actor=admin.actor_for(caller.id),
        lease=ctx.claim_lease,
        lateness=ctx.lateness,
        force=force,
    )
    return JSONResponse(callback_view(cb))
