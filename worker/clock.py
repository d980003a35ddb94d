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
