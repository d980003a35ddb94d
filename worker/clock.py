"""The one clock. Everything that needs "now" gets it from here, so tests freeze it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    """UTC wall clock. freezegun patches ``datetime.now``, so tests can freeze this one too."""

    def now(self) -> datetime:
        return datetime.now(UTC)


def require_aware(value: datetime, name: str) -> datetime:
    """Reject naive datetimes at a boundary and normalise aware ones to UTC."""
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise ValueError(f"{name} must be timezone-aware (e.g. 2026-01-01T09:00:00Z), got {value}")
    return value.astimezone(UTC)
