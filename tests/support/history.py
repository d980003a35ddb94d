"""Reading a callback's history (``callback_events``) in tests: one helper for all."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from worker.db.models import CallbackEvent


def events(sessions: sessionmaker[Session], callback_id: str) -> list[CallbackEvent]:
    """Every event of ``callback_id``, oldest first."""
    with sessions() as session:
        return list(
            session.scalars(
                select(CallbackEvent)
                .where(CallbackEvent.callback_id == callback_id)
                .order_by(CallbackEvent.id)
            )
        )
