"""Pauses on dialing, kept in the database so every worker and poller sees them.

The ``provider`` hold is set when the provider rejects our own API key: dialing more
would only burn callbacks, so the poller claims nothing until the hold ends, and the
first dial after it tests the key again.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from worker.db.models import Hold

PROVIDER = "provider"


def set_hold(session: Session, scope: str, *, until: datetime, reason: str, now: datetime) -> None:
    """Create or extend the hold on ``scope`` (an upsert: safe from many workers at once)."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(Hold).values(scope=scope, until=until, reason=reason, updated_at=now)
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=[Hold.scope],
            set_={"until": until, "reason": reason, "updated_at": now},
        )
    )


def active_hold(session: Session, scope: str, now: datetime) -> Hold | None:
    return session.scalar(select(Hold).where(Hold.scope == scope, Hold.until > now))
