"""Pacing: how fast and how much each organization (and number) may dial.

- Concurrency caps (per organization, per ``phone_number_id``) count callbacks in
  ``dispatching``; the claim never takes more than the room left (:mod:`worker.pacing.fairness`).
- The dial rate is a token bucket per organization (``org_pacing``): it refills at
  ``max_dials_per_minute / 60`` per second up to a burst of 5 seconds' worth (at least 1);
  the claim takes no more than the tokens left, then :func:`charge` spends them.
- A 429 from the provider puts a hold (:mod:`worker.pacing.holds`) on the organization, or on the
  number, for its ``Retry-After``; the claim skips held scopes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from worker.db.models import OrgConfig, OrgPacing
from worker.pacing.holds import set_hold
from worker.pacing.windows import DAY_MINUTES, Window

UNLIMITED = 1_000_000_000
MAX_PAUSE = timedelta(hours=1)


@dataclass(frozen=True)
class Pacing:
    """Defaults for every organization (``org_configs`` overrides them). 0 = unlimited.

    The bare ``Pacing()`` paces nothing (always open, no caps); the worker's runtime builds
    its own from the settings (:attr:`worker.settings.Settings.pacing`: 08:00-21:00,
    caps).
    """

    window: Window = field(default_factory=lambda: Window(0, DAY_MINUTES))
    fallback_timezone: str = "UTC"
    max_concurrent: int = 0
    max_concurrent_per_number: int = 0
    max_dials_per_minute: int = 0
    rate_limited_pause: timedelta = timedelta(seconds=5)
    rate_limited_scope: str = "organization"


def org_scope(organization_id: str) -> str:
    return f"org:{organization_id}"


def number_scope(organization_id: str, phone_number_id: str) -> str:
    return f"number:{organization_id}:{phone_number_id}"


def burst(rate_per_minute: int) -> float:
    return max(1.0, rate_per_minute / 12.0)


def refill(tokens: float | None, since: datetime | None, now: datetime, rate: int) -> float:
    """Tokens available at ``now`` (a missing bucket is full)."""
    if tokens is None or since is None:
        return burst(rate)
    elapsed = max(0.0, (now - since).total_seconds())
    return min(burst(rate), tokens + elapsed * rate / 60.0)


def charge(session: Session, counts: Mapping[str, int], *, now: datetime, pacing: Pacing) -> None:
    """Spend one token per claimed callback from each rate-limited organization's bucket.

    Runs in the claim's transaction, which holds the claim lock (PostgreSQL) or the write
    lock (SQLite), so no other claim reads a bucket between the claim and this write.
    """
    if not counts:
        return
    rates = dict(
        session.execute(
            select(OrgConfig.organization_id, OrgConfig.max_dials_per_minute).where(
                OrgConfig.organization_id.in_(counts)
            )
        ).all()
    )
    limited = {
        org: rate
        for org in counts
        if (rate := rates.get(org) if rates.get(org) is not None else pacing.max_dials_per_minute)
    }
    if not limited:
        return
    buckets = {
        b.organization_id: b
        for b in session.scalars(select(OrgPacing).where(OrgPacing.organization_id.in_(limited)))
    }
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    for org, rate in limited.items():
        bucket = buckets.get(org)
        left = refill(
            bucket.tokens if bucket else None, bucket.refilled_at if bucket else None, now, rate
        )
        tokens = left - counts[org]
        stmt = dialect.insert(OrgPacing).values(organization_id=org, tokens=tokens, refilled_at=now)
        session.execute(
            stmt.on_conflict_do_update(
                index_elements=[OrgPacing.organization_id],
                set_={"tokens": tokens, "refilled_at": now},
            )
        )


def pause_wait(retry_after: float | None, pacing: Pacing) -> timedelta:
    """How long a 429 pauses: its ``Retry-After`` (else the default), 1 s to 1 hour."""
    wait = timedelta(seconds=retry_after) if retry_after else pacing.rate_limited_pause
    return min(max(wait, timedelta(seconds=1)), MAX_PAUSE)


class RateLimited(Protocol):
    """The callback a 429 answered (a :class:`Callback`, or an attempt just started)."""

    @property
    def id(self) -> str: ...
    @property
    def organization_id(self) -> str: ...
    @property
    def phone_number_id(self) -> str | None: ...


def pause_for_rate_limit(
    session: Session,
    callback: RateLimited,
    wait: timedelta,
    *,
    now: datetime,
    pacing: Pacing,
) -> str:
    """The provider said 429: hold the organization (or number) for ``wait``; returns the
    scope held."""
    if pacing.rate_limited_scope == "number" and callback.phone_number_id:
        scope = number_scope(callback.organization_id, callback.phone_number_id)
    else:
        scope = org_scope(callback.organization_id)
    set_hold(
        session,
        scope,
        until=now + wait,
        reason=f"provider answered 429 (rate limited) to callback {callback.id}",
        now=now,
    )
    return scope
