"""A record of reads worth one: who asked to see phone numbers unmasked, and where."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from worker.console.viewers import Viewer
from worker.db.models import ConsoleAudit

UNMASK = "unmask"


def record(
    session: Session, viewer: Viewer, action: str, detail: dict[str, Any], *, now: datetime
) -> None:
    session.add(ConsoleAudit(at=now, key_id=viewer.key_id, action=action, detail=detail))


def recent(session: Session, limit: int = 50) -> list[ConsoleAudit]:
    return list(session.scalars(select(ConsoleAudit).order_by(ConsoleAudit.id.desc()).limit(limit)))
