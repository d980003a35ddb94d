"""``/v1/callbacks``: list, get, cancel, dispatch — thin adapters over :mod:`worker.actions`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, ValidationError, field_validator

from worker import actions
from worker.api import reads
from worker.api.auth import Caller
from worker.api.bodies import BadJson, parse_json
from worker.api.deps import Context
from worker.api.errors import ValidationFailed
from worker.serializer import callback_view
from worker.status import Status
from worker.validation import StorableStr

router = APIRouter(prefix="/v1/callbacks")

MAX_BODY = 64 * 1024
"""A cancel body is one short string; anything far larger is not a cancel request."""


class CancelBody(BaseModel):
    reason: StorableStr | None = Field(default=None, max_length=500)

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
        data = parse_json(raw)
    except BadJson as exc:
        raise ValidationFailed(f"Invalid request body: {exc}") from None
    try:
        return CancelBody.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            ".".join(str(p) for p in e["loc"]) + f": {e['msg'].removeprefix('Value error, ')}"
            if e["loc"]
            else e["msg"]
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
) -> Response:
    with reads.read_connection(ctx.sessions) as conn:
        body = reads.list_json(
            conn,
            caller.organization_id,
            status=status,
            source_session_id=source_session_id,
            limit=limit,
        )
    return Response(body, media_type="application/json")


@router.get("/{id}")
def get_callback(id: str, caller: Caller, ctx: Context) -> Response:
    with reads.read_connection(ctx.sessions) as conn:
        body = reads.callback_json(conn, caller.organization_id, id)
    return Response(body, media_type="application/json")


@router.post("/{id}/cancel")
def cancel_callback(
    id: str,
    caller: Caller,
    ctx: Context,
    body: Annotated[CancelBody, Depends(cancel_body)],
) -> JSONResponse:
    with ctx.sessions.begin() as session:
        cb = actions.cancel(
            session,
            caller.organization_id,
            id,
            now=ctx.clock.now(),
            actor=actions.actor_for(caller.id),
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
        # Nesting is bounded before parsing (worker.api.bodies); too deep is ignored too.
        data = parse_json(raw) if raw.strip() else {}
    except BadJson:
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
    cb = actions.dispatch_now(
        ctx.sessions,
        ctx.clock,
        ctx.publish,
        caller.organization_id,
        id,
        actor=actions.actor_for(caller.id),
        lease=ctx.claim_lease,
        lateness=ctx.lateness,
        force=force,
    )
    return JSONResponse(callback_view(cb))
