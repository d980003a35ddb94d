"""``POST /webhooks/speko``: the platform's webhooks in (issue 14).

Verified (Standard Webhooks, over the raw body), then stored, then acknowledged; the work
is done afterwards by a worker task (``callbacks.process_platform_event``), so the answer
never waits on it. The same ``webhook-id`` again is acknowledged and stores nothing.
A task that is never sent (broker down) loses nothing: the beat's sweep finds the
stored, unprocessed event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, cast

from celery import Celery
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from standardwebhooks.webhooks import Webhook

from worker.api.bodies import BadJson, parse_json
from worker.api.deps import Context
from worker.api.errors import ApiError, ValidationFailed
from worker.platform_events.metrics import RECEIVED
from worker.platform_events.signature import BadSignature, verify
from worker.platform_events.store import Event, NotAnEvent, parse_event, store_event

log = logging.getLogger(__name__)

router = APIRouter()

PATH = "/webhooks/speko"
PROCESS_TASK = "callbacks.process_platform_event"
SendEvent = Callable[[str], None]
"""Publishes the processing task for a stored event's ``webhook-id``."""


class BadWebhookSignature(ApiError):
    status = 401
    code = "UNAUTHORIZED"

    def __init__(self) -> None:
        super().__init__("Missing or invalid webhook signature")


class ReceiverOff(ApiError):
    status = 503
    code = "SERVICE_UNAVAILABLE"

    def __init__(self) -> None:
        super().__init__("Webhook receiver not configured (SPEKO_WEBHOOK_SECRET)")


@dataclass(frozen=True)
class Receiver:
    hooks: list[Webhook]
    """One per configured secret; empty: the receiver is off."""
    send: SendEvent


@dataclass(frozen=True)
class Verified:
    webhook_id: str
    event: Event


def receiver_of(request: Request) -> Receiver:
    return cast(Receiver, request.app.state.speko_receiver)


async def verified_event(request: Request) -> Verified:
    """The body, read raw (the signature covers its bytes), verified, then parsed."""
    receiver = receiver_of(request)
    if not receiver.hooks:
        # Unconfigured: a 5xx, so the platform keeps its reports and retries them later.
        log.error("POST /webhooks/speko refused: SPEKO_WEBHOOK_SECRET is not set")
        raise ReceiverOff()
    raw = await request.body()
    try:
        verify(receiver.hooks, raw, request.headers)
    except BadSignature as exc:
        RECEIVED.labels("unauthorized").inc()
        log.warning("POST /webhooks/speko refused with 401: %s", exc)
        raise BadWebhookSignature() from None
    webhook_id = request.headers["webhook-id"]
    if len(webhook_id) > 256:
        RECEIVED.labels("invalid").inc()
        raise ValidationFailed("Invalid webhook-id: at most 256 characters")
    try:
        event = parse_event(parse_json(raw))
    except (BadJson, NotAnEvent) as exc:
        RECEIVED.labels("invalid").inc()
        raise ValidationFailed(f"Invalid event: {exc}") from None
    return Verified(webhook_id, event)


@router.post(PATH)
def receive(
    ctx: Context,
    verified: Annotated[Verified, Depends(verified_event)],
    receiver: Annotated[Receiver, Depends(receiver_of)],
) -> JSONResponse:
    event = verified.event
    with ctx.sessions.begin() as session:
        stored = store_event(
            session,
            verified.webhook_id,
            event.model_dump(mode="json"),
            event.type,
            now=ctx.clock.now(),
        )
    # Committed: from here on the event is safe, whatever happens to the message.
    RECEIVED.labels("stored" if stored else "duplicate").inc()
    if stored:
        try:
            receiver.send(verified.webhook_id)
        except Exception as exc:  # the sweep will process it; the platform must not retry
            log.warning(
                "platform event %s stored, its task not sent (%s): the sweep will process it",
                verified.webhook_id,
                type(exc).__name__,
            )
    return JSONResponse({"received": True, "duplicate": not stored})


def celery_sender(celery: Celery) -> SendEvent:
    def send(webhook_id: str) -> None:
        celery.send_task(PROCESS_TASK, args=(webhook_id,))

    return send
