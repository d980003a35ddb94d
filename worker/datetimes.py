"""The range of dates a callback may take.

Dates far outside it overflow Python's datetime once lateness or a calling-window
deferral is added (9999-12-31T23:00:00Z + 4 h), or when converted to UTC (0001-01-01 with
a positive offset): refused at validation with words, not a traceback later.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
MAX_LATENESS_SECONDS = 366 * 24 * 3600
"""The most lateness a callback (or CALLBACK_MAX_LATENESS) may allow: a year."""


def datetime_in_range(value: datetime) -> datetime:
    if not EARLIEST <= value < LATEST:
        raise ValueError(
            f"{value.isoformat()} is out of range: give a date between "
            f"{EARLIEST.date().isoformat()} and {LATEST.date().isoformat()}"
        )
    return value


When = Annotated[AwareDatetime, AfterValidator(datetime_in_range)]
"""An aware datetime a callback can be scheduled at."""
