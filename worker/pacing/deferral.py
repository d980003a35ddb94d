"""Calling windows applied: a claimed callback outside its window goes back to
``scheduled`` with ``due_at`` at the window's next opening, never failed for it.

Checked by the poller right after a claim (so a deferred row is not published) and again
by the worker at the start of an attempt (a queue may have held the message past the
window's close; a manual dispatch never went through the poller). ``scheduled_at`` is
kept as asked; ``expires_at`` moves later by the wait the window imposes (from now to the
opening) and by nothing else, so a callback is never placed later than its lateness after
``scheduled_at`` plus the calling-window waits it really had to take. One already past
its ``expires_at`` is not deferred at all: the attempt start fails it as ``expired``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from worker import lifecycle
from worker.db.models import Callback
from worker.pacing.limits import Pacing
from worker.pacing.orgs import OrgRules, rules_for
from worker.pacing.windows import (
    NoCommonWindow,
    callee_zones,
    describe_closed,
    next_eligible_cached,
)

log = logging.getLogger(__name__)

# Columns only: loading Callback entities here would put stale copies in the session's
# identity map, and a later transition's RETURNING would hand those back.
_COLUMNS = (
    Callback.id,
    Callback.organization_id,
    Callback.to_number,
    Callback.metadata_,
    Callback.scheduled_at,
    Callback.expires_at,
)


@dataclass(frozen=True)
class Deferral:
    until: datetime
    why: str
    zones: list[str]
    zone_source: str


def verdict(
    to_number: str, metadata: dict[str, Any], rules: OrgRules, *, now: datetime, pacing: Pacing
) -> Deferral | None:
    """``None`` if the window is open for this callee now, else until when to wait."""
    explicit = metadata.get("timezone")
    found = callee_zones(
        to_number,
        explicit=explicit if isinstance(explicit, str) else None,
        org_zone=rules.timezone,
        fallback=pacing.fallback_timezone,
    )
    zones = found.zones
    try:
        until = next_eligible_cached(now, zones, rules.window)
    except NoCommonWindow:
        # No moment suits every zone the number may be in: the first listed (the
        # number's main zone in phonenumbers' data) decides. README: set metadata.timezone.
        zones = zones[:1]
        until = next_eligible_cached(now, zones, rules.window)
    if until == now:
        return None
    return Deferral(
        until,
        f"deferred: {describe_closed(now, zones, rules.window)}",
        [z.key for z in zones],
        found.source,
    )


def _defer(
    session: Session, row: Any, d: Deferral, *, now: datetime, actor: str
) -> Callback | None:
    expires_at = row.expires_at
    if expires_at is not None:
        # The wait from now to the opening, not from scheduled_at: time already lost (a
        # backlog, an earlier deferral already counted) is never granted twice.
        expires_at = expires_at + (d.until - now)
    return lifecycle.defer(
        session,
        row.id,
        until=d.until,
        expires_at=expires_at,
        now=now,
        actor=actor,
        detail={
            "why": d.why,
            "until": d.until.isoformat(),
            "zones": d.zones,
            "zone_from": d.zone_source,
        },
    )


def defer_closed(
    session: Session, ids: Sequence[str], *, now: datetime, pacing: Pacing, actor: str
) -> list[str]:
    """Defer the claimed ``ids`` whose window is closed; return the others, in order."""
    if not ids:
        return []
    rows = session.execute(select(*_COLUMNS).where(Callback.id.in_(ids))).all()
    rules = rules_for(session, {r.organization_id for r in rows}, pacing)
    deferred = set()
    for row in rows:
        if row.expires_at is not None and row.expires_at <= now:
            continue  # ran out already: a deferral must not revive it (the start fails it)
        org_rules = rules[row.organization_id]
        d = verdict(row.to_number, row.metadata_, org_rules, now=now, pacing=pacing)
        if d is not None and _defer(session, row, d, now=now, actor=actor) is not None:
            deferred.add(row.id)
    if deferred:
        log.info("deferred %d claimed callbacks to their calling window", len(deferred))
    return [i for i in ids if i not in deferred]
