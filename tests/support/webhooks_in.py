"""Signing deliveries as the platform does (Standard Webhooks), for the receiver's tests."""

from __future__ import annotations

import base64
import json
import os
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from standardwebhooks.webhooks import Webhook


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def event(event_type: str, data: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": event_type, "timestamp": "2026-03-02T12:00:00Z", "data": data, **extra}


def signed(
    secret: str,
    body: bytes | dict[str, Any],
    *,
    webhook_id: str | None = None,
    skew: timedelta = timedelta(0),
    at: datetime | None = None,
) -> tuple[bytes, dict[str, str]]:
    """The raw body and the three headers, signed ``skew`` away from ``at`` (default: the
    wall clock, the receiver's clock in a real process; a test of an app with a frozen
    clock passes that clock's time)."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    msg_id = webhook_id or f"msg_{uuid.uuid4().hex}"
    at = (at or datetime.now(UTC)) + skew
    signature = Webhook(secret).sign(msg_id, at, raw.decode())
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }
    return raw, headers
