"""``/v1/webhooks`` and ``/v1/webhook-deliveries``: an organization's callback webhooks,
thin adapters over :mod:`worker.webhooks`. Another organization's id is a 404, the same
as a missing one."""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from worker.api.auth import Caller
from worker.api.bodies import BadJson, parse_json
from worker.api.deps import Context
from worker.api.errors import ApiError, ValidationFailed
from worker.webhooks import delivery as deliveries
from worker.webhooks.addresses import RefusedURL
from worker.webhooks.endpoints import (
    InvalidEndpoint,
    create_endpoint,
    endpoint_view,
    get_endpoint,
    list_endpoints,
    rotate_secret,
    update_endpoint,
)
from worker.webhooks.log import BadCursor, Filters, list_deliveries
from worker.webhooks.outbox import DELIVERY_STATUSES

router = APIRouter()
M = TypeVar("M", bound=BaseModel)

MAX_BODY = 64 * 1024


class NotFound(ApiError):
    status = 404
    code = "NOT_FOUND"


class Conflict(ApiError):
    status = 409
    code = "CONFLICT"


class EndpointBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=2048)
    events: list[str] = Field(default_factory=list, max_length=20)
    description: str | None = Field(default=None, max_length=500)
    enabled: bool = True


class EndpointPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, min_length=1, max_length=2048)
    events: list[str] | None = Field(default=None, max_length=20)
    description: str | None = Field(default=None, max_length=500)
    enabled: bool | None = None


async def _body(request: Request) -> object:
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise ValidationFailed("Invalid request body: too large")
    try:
        return parse_json(raw) if raw.strip() else {}
    except BadJson as exc:
        raise ValidationFailed(f"Invalid request body: {exc}") from None


def _parse(model: type[M], data: object) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            ".".join(str(p) for p in e["loc"]) + f": {e['msg']}" if e["loc"] else e["msg"]
            for e in exc.errors()
        )
        raise ValidationFailed(f"Invalid request body: {problems}") from None


def _json(document: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(document, status_code=status)


def _missing() -> NotFound:
    return NotFound("Webhook endpoint not found")


@router.get("/v1/webhooks")
def list_webhooks(caller: Caller, ctx: Context) -> JSONResponse:
    with ctx.sessions() as session:
        found = list_endpoints(session, caller.organization_id)
        return _json({"webhooks": [endpoint_view(e) for e in found]})


@router.post("/v1/webhooks")
async def create_webhook(request: Request, caller: Caller, ctx: Context) -> JSONResponse:
    body = _parse(EndpointBody, await _body(request))
    with ctx.sessions.begin() as session:
        try:
            endpoint = create_endpoint(
                session,
                organization_id=caller.organization_id,
                url=body.url,
                events=body.events,
                description=body.description,
                enabled=body.enabled,
                now=ctx.clock.now(),
                allowed=ctx.webhook_allowed,
            )
        except (RefusedURL, InvalidEndpoint) as exc:
            raise ValidationFailed(f"Invalid request body: {exc}") from None
        return _json(endpoint_view(endpoint, with_secret=True), 201)


@router.get("/v1/webhooks/{id}")
def get_webhook(id: str, caller: Caller, ctx: Context) -> JSONResponse:
    with ctx.sessions() as session:
        endpoint = get_endpoint(session, id, organization_id=caller.organization_id)
        if endpoint is None:
            raise _missing()
        return _json(endpoint_view(endpoint))


@router.patch("/v1/webhooks/{id}")
async def patch_webhook(id: str, request: Request, caller: Caller, ctx: Context) -> JSONResponse:
    patch = _parse(EndpointPatch, await _body(request))
    changes = patch.model_dump(exclude_unset=True)
    for field in ("url", "enabled"):
        if field in changes and changes[field] is None:
            raise ValidationFailed(f"Invalid request body: {field}: may not be null")
    with ctx.sessions.begin() as session:
        endpoint = get_endpoint(session, id, organization_id=caller.organization_id)
        if endpoint is None:
            raise _missing()
        try:
            update_endpoint(
                session, endpoint, changes, now=ctx.clock.now(), allowed=ctx.webhook_allowed
            )
        except (RefusedURL, InvalidEndpoint) as exc:
            raise ValidationFailed(f"Invalid request body: {exc}") from None
        return _json(endpoint_view(endpoint))


@router.delete("/v1/webhooks/{id}")
def delete_webhook(id: str, caller: Caller, ctx: Context) -> Response:
    with ctx.sessions.begin() as session:
        endpoint = get_endpoint(session, id, organization_id=caller.organization_id)
        if endpoint is None:
            raise _missing()
        # Its deliveries and their log go with it (ON DELETE CASCADE).
        session.delete(endpoint)
    return Response(status_code=204)


@router.post("/v1/webhooks/{id}/rotate-secret")
def rotate_webhook_secret(id: str, caller: Caller, ctx: Context) -> JSONResponse:
    with ctx.sessions.begin() as session:
        endpoint = get_endpoint(session, id, organization_id=caller.organization_id)
        if endpoint is None:
            raise _missing()
        rotate_secret(session, endpoint, now=ctx.clock.now())
        view = endpoint_view(endpoint, with_secret=True)
        view["previous_secret_expires_at"] = (
            endpoint.previous_secret_until.isoformat().replace("+00:00", "Z")
            if endpoint.previous_secret_until
            else None
        )
        return _json(view)


@router.get("/v1/webhook-deliveries")
def list_webhook_deliveries(
    caller: Caller,
    ctx: Context,
    endpoint_id: str | None = None,
    event: str | None = None,
    status: Literal["pending", "delivered", "failed"] | None = None,
    callback_id: str | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 25,
) -> JSONResponse:
    assert status is None or status in DELIVERY_STATUSES
    filters = Filters(endpoint_id, event, status, callback_id)
    with ctx.sessions() as session:
        try:
            page = list_deliveries(
                session, caller.organization_id, filters, cursor=cursor, limit=limit
            )
        except BadCursor as exc:
            raise ValidationFailed(f"Invalid request: {exc}") from None
        return _json(page)


@router.post("/v1/webhook-deliveries/{id}/redeliver")
def redeliver(id: str, caller: Caller, ctx: Context) -> JSONResponse:
    with ctx.sessions.begin() as session:
        try:
            row = deliveries.redeliver(
                session, id, organization_id=caller.organization_id, now=ctx.clock.now()
            )
        except deliveries.EndpointDisabled as exc:
            raise Conflict(str(exc)) from None
        if row is None:
            raise NotFound("Webhook delivery not found")
        return _json(deliveries.delivery_view(row, []), 202)
