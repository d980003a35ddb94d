"""What every route needs, wired once per app and handed out as ``Annotated`` dependencies."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, cast

from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker

from worker.actions import Publish
from worker.api.broker import Probe
from worker.api.readers import Reader
from worker.api.readiness import Readiness
from worker.clock import Clock
from worker.webhooks.addresses import NOTHING_ALLOWED, Allowed


@dataclass(frozen=True)
class ApiContext:
    sessions: sessionmaker[Session]
    clock: Clock
    publish: Publish
    broker_probe: Probe
    claim_lease: timedelta
    readiness: Readiness
    """``/readyz``'s cached verdict (one per app)."""
    reader: Reader
    """Where the reads (get, list, key lookups) run: async routes await it."""
    lateness: timedelta | None = None
    """A manual dispatch may be placed this long from now (CALLBACK_MAX_LATENESS)."""
    webhook_allowed: Allowed = NOTHING_ALLOWED
    """Webhook URLs' exceptions (WEBHOOK_ALLOW_HTTP_HOSTS, WEBHOOK_ALLOW_PRIVATE_HOSTS)."""


async def get_context(request: Request) -> ApiContext:
    return cast(ApiContext, request.app.state.context)


Context = Annotated[ApiContext, Depends(get_context)]
