"""``/v1/callbacks``: list, get, cancel, dispatch — thin adapters over :mod:`worker.actions`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, ValidationError, field_validator
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from worker import actions, edits
from worker.actions import CallbackNotFound, storable
from worker.api import operators, queries, reads
from worker.api.auth import Caller
from worker.api.bodies import BadJson, parse_json
from worker.api.cursors import BadCursor
from worker.api.deps import ApiContext, Context
from worker.api.errors import Conflict, ValidationFailed
from worker.apikeys import OPERATOR_ORG
from worker.creation import IdempotencyConflict
from worker.db.models import ApiKey
from worker.serializer import callback_view
from worker.status import Status
from worker.validation import InvalidCallback, StorableStr

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
async def list_callbacks(
    caller: Caller,
    ctx: Context,
    status: Status | None = None,
    source_session_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 25,
    cursor: Annotated[str | None, Query(max_length=queries.MAX_CURSOR)] = None,
    to_number: str | None = None,
    scheduled_after: str | None = None,
    scheduled_before: str | None = None,
    organization_id: str | None = None,
) -> Response:
    """Extensions (issue 16): ``cursor`` / ``next_cursor`` pages and the console's
    filters; without them, the list is the platform's, plus ``next_cursor``. An operator
    key lists every organization, or the one ``organization_id`` names; for an
    organization's key that filter can only narrow its own list."""
    filters = reads.ListFilter(
        status=status,
        source_session_id=source_session_id,
        to_number=None if to_number is None else queries.to_number(to_number),
        scheduled_after=(
            None
            if scheduled_after is None
            else queries.aware_datetime("scheduled_after", scheduled_after)
        ),
        scheduled_before=(
            None
            if scheduled_before is None
            else queries.aware_datetime("scheduled_before", scheduled_before)
        ),
    )
    after, before = filters.scheduled_after, filters.scheduled_before
    if after is not None and before is not None and after > before:
        raise ValidationFailed("Invalid request: scheduled_after is later than scheduled_before")
    org = caller.organization_id
    if organization_id is not None and (caller.operator or organization_id != org):
        # Another organization's id narrows an organization's list to nothing.
        org = organization_id if caller.operator else OPERATOR_ORG
    try:
        if caller.operator and organization_id is None:
            # Every organization at once: an operator's view, rare; on a worker thread.
            body = await run_in_threadpool(_operator_page, ctx, filters, limit, cursor)
        else:
            body = await ctx.reader.page(org, filters, limit=limit, cursor=cursor)
    except BadCursor:
        raise ValidationFailed(
            "Invalid request: cursor: not a cursor of this list (use the next_cursor "
            "of the previous page, with the same filters)"
        ) from None
    return Response(body, media_type="application/json")


def _operator_page(
    ctx: ApiContext, filters: reads.ListFilter, limit: int, cursor: str | None
) -> bytes:
    with reads.read_connection(ctx.sessions) as conn:
        return operators.page_all_json(conn, filters, limit=limit, cursor=cursor)


def _operator_org_of(ctx: ApiContext, caller: ApiKey, callback_id: str) -> str:
    with reads.read_connection(ctx.sessions) as conn:
        return operators.organization_of(conn, caller, callback_id)


# The reads are async (worker.api.readers): no threadpool hop on PostgreSQL.
@router.get("/{id}")
async def get_callback(id: str, caller: Caller, ctx: Context) -> Response:
    org = caller.organization_id
    if caller.operator:
        org = await run_in_threadpool(_operator_org_of, ctx, caller, id)
    body = await ctx.reader.callback(org, id)
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
            operators.organization_of(session.connection(), caller, id),
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
    with reads.read_connection(ctx.sessions) as conn:
        org = operators.organization_of(conn, caller, id)
    cb = actions.dispatch_now(
        ctx.sessions,
        ctx.clock,
        ctx.publish,
        org,
        id,
        actor=actions.actor_for(caller.id),
        lease=ctx.claim_lease,
        lateness=ctx.lateness,
        force=force,
    )
    return JSONResponse(callback_view(cb))


# --- create and edit (issue 16): extensions beside the platform's paths ----------------


async def json_object_body(request: Request, _: Caller) -> dict[str, Any]:
    """A JSON object body, parsed after the key is checked (bad auth is 401, never 400)."""
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise ValidationFailed("Invalid request body: too large")
    try:
        data = parse_json(raw)
    except BadJson as exc:
        raise ValidationFailed(f"Invalid request body: {exc}") from None
    if not isinstance(data, dict):
        raise ValidationFailed("Invalid request body: must be a JSON object")
    return data


def _idempotency_key(request: Request) -> str | None:
    values = request.headers.getlist("idempotency-key")
    if not values:
        return None
    if len(values) > 1:
        raise ValidationFailed("Invalid request: Idempotency-Key: given more than once")
    key = values[0].strip()
    if not 1 <= len(key) <= 128 or not key.isprintable():
        raise ValidationFailed(
            "Invalid request: Idempotency-Key: must be 1 to 128 printable characters"
        )
    return key


def _invalid(exc: InvalidCallback) -> ValidationFailed:
    return ValidationFailed("Invalid request body: " + "; ".join(exc.problems))


@router.post("")
def create_callback(
    request: Request,
    caller: Caller,
    ctx: Context,
    body: Annotated[dict[str, Any], Depends(json_object_body)],
) -> JSONResponse:
    """201 with the new callback; 200 with the same one for a repeated Idempotency-Key
    and body; 409 for that key with another body."""
    key = _idempotency_key(request)
    actor = actions.actor_for(caller.id)
    org = caller.organization_id
    if caller.operator:
        # An operator creates in the organization the body names (required then).
        given = body.get("organization_id")
        if not isinstance(given, str) or not given.strip():
            raise ValidationFailed(
                "Invalid request body: organization_id: required with an operator key"
            )
        org = given
    for attempt in range(2):
        try:
            with ctx.sessions.begin() as session:
                cb, replayed = edits.create_one(
                    session,
                    org,
                    body,
                    idempotency_key=key,
                    now=ctx.clock.now(),
                    actor=actor,
                    lateness=ctx.lateness,
                )
                view = callback_view(cb)
        except InvalidCallback as exc:
            raise _invalid(exc) from None
        except IdempotencyConflict as exc:
            raise Conflict(str(exc)) from None
        except IntegrityError:
            # Two creates raced with one key: the unique index failed the loser; once
            # more, it finds the winner's row (a replay or a conflict).
            if attempt or key is None:
                raise
            continue
        return JSONResponse(view, status_code=200 if replayed else 201)
    raise AssertionError("unreachable")  # pragma: no cover


@router.patch("/{id}")
def edit_callback(
    id: str,
    caller: Caller,
    ctx: Context,
    body: Annotated[dict[str, Any], Depends(json_object_body)],
) -> JSONResponse:
    """Change ``scheduled_at``, ``reason``, ``instructions``, ``summary``, ``metadata`` of
    a ``scheduled`` callback (409 naming its status otherwise)."""
    if not storable(id):
        raise CallbackNotFound(id)
    try:
        changes = edits.parse_edit(body)
    except InvalidCallback as exc:
        raise _invalid(exc) from None
    with ctx.sessions.begin() as session:
        try:
            cb = edits.edit(
                session,
                operators.organization_of(session.connection(), caller, id),
                id,
                changes,
                now=ctx.clock.now(),
                actor=actions.actor_for(caller.id),
            )
        except InvalidCallback as exc:
            raise _invalid(exc) from None
        return JSONResponse(callback_view(cb))
