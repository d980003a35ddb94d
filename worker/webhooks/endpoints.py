"""Webhook endpoints of an organization: create, change, remove, rotate the secret."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from ulid import ULID

from worker.db.models import WebhookEndpoint
from worker.serializer import rfc3339
from worker.webhooks.addresses import NOTHING_ALLOWED, Allowed, Resolver, check_url, resolve
from worker.webhooks.outbox import EVENT_TYPES

ROTATION_GRACE = timedelta(hours=24)
"""How long the secret before a rotation still signs (receivers switch over meanwhile)."""


class InvalidEndpoint(ValueError):
    """Bad input for an endpoint; the message names the field."""


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def check_events(events: Sequence[str]) -> list[str]:
    unknown = sorted(set(events) - EVENT_TYPES)
    if unknown:
        raise InvalidEndpoint(
            f"events: unknown event type(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(EVENT_TYPES))}"
        )
    return list(dict.fromkeys(events))


def create_endpoint(
    session: Session,
    *,
    organization_id: str,
    url: str,
    events: Sequence[str] = (),
    description: str | None = None,
    enabled: bool = True,
    now: datetime,
    allowed: Allowed = NOTHING_ALLOWED,
    resolver: Resolver = resolve,
) -> WebhookEndpoint:
    check_url(url, allowed=allowed, resolver=resolver)
    endpoint = WebhookEndpoint(
        id="whe_" + str(ULID()).lower(),
        organization_id=organization_id,
        url=url.strip(),
        events=check_events(events),
        description=description,
        enabled=enabled,
        secret=new_secret(),
        created_at=now,
        updated_at=now,
    )
    session.add(endpoint)
    session.flush()
    return endpoint


def get_endpoint(
    session: Session, endpoint_id: str, *, organization_id: str | None
) -> WebhookEndpoint | None:
    """The endpoint, if it belongs to ``organization_id`` (``None``: any, the operator's)."""
    if "\x00" in endpoint_id:  # no row holds NUL (PostgreSQL refuses it): not found
        return None
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None:
        return None
    if organization_id is not None and endpoint.organization_id != organization_id:
        return None
    return endpoint


def list_endpoints(session: Session, organization_id: str) -> list[WebhookEndpoint]:
    return list(
        session.scalars(
            select(WebhookEndpoint)
            .where(WebhookEndpoint.organization_id == organization_id)
            .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
        )
    )


def update_endpoint(
    session: Session,
    endpoint: WebhookEndpoint,
    changes: dict[str, Any],
    *,
    now: datetime,
    allowed: Allowed = NOTHING_ALLOWED,
    resolver: Resolver = resolve,
) -> WebhookEndpoint:
    if "url" in changes:
        check_url(changes["url"], allowed=allowed, resolver=resolver)
        endpoint.url = changes["url"].strip()
    if "events" in changes:
        endpoint.events = check_events(changes["events"] or [])
    if "description" in changes:
        endpoint.description = changes["description"]
    if "enabled" in changes:
        endpoint.enabled = bool(changes["enabled"])
        if endpoint.enabled:
            endpoint.disabled_reason, endpoint.failing_since = None, None
        else:
            endpoint.disabled_reason = "disabled by the customer"
    endpoint.updated_at = now
    session.flush()
    return endpoint


def rotate_secret(
    session: Session, endpoint: WebhookEndpoint, *, now: datetime, grace: timedelta = ROTATION_GRACE
) -> WebhookEndpoint:
    """A new secret; the old one keeps signing (both signatures sent) until ``now + grace``."""
    endpoint.previous_secret, endpoint.previous_secret_until = endpoint.secret, now + grace
    endpoint.secret = new_secret()
    endpoint.updated_at = now
    session.flush()
    return endpoint


def signing_secrets(endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    """The secrets that sign a message sent at ``now``: the current one, and the one before
    a rotation during its grace period."""
    out = [endpoint.secret]
    until = endpoint.previous_secret_until
    if endpoint.previous_secret and until is not None and now < until:
        out.append(endpoint.previous_secret)
    return out


def endpoint_view(endpoint: WebhookEndpoint, *, with_secret: bool = False) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": endpoint.id,
        "organization_id": endpoint.organization_id,
        "url": endpoint.url,
        "events": list(endpoint.events),
        "description": endpoint.description,
        "enabled": endpoint.enabled,
        "disabled_reason": endpoint.disabled_reason,
        "created_at": rfc3339(endpoint.created_at),
        "updated_at": rfc3339(endpoint.updated_at),
    }
    if with_secret:
        view["secret"] = endpoint.secret
    return view
