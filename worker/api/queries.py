"""The console's list filters, read from query strings with the same rules as creation.

Query strings decode ``+`` as a space (HTML forms), so ``?to_number=+12015551234`` and
``?scheduled_after=2026-03-02T12:00:00+00:00`` sent unencoded arrive with a space where
the ``+`` was: that one space, in that one place, is read back as the ``+`` it was.
"""

from __future__ import annotations

import re
from datetime import datetime

from worker.api.errors import ValidationFailed
from worker.datetimes import datetime_in_range
from worker.validation import e164, unstorable

MAX_CURSOR = 512
"""Far longer than any cursor we make (about 150 characters)."""

_SPACED_OFFSET = re.compile(r"^(.*T.*) (\d\d(:?\d\d)?)$")


def to_number(value: str) -> str:
    """A phone number to filter by, validated as at creation (E.164); a bad one is a 400."""
    if value.startswith(" ") and value[1:].isdigit():
        value = "+" + value[1:]
    try:
        return e164(value)
    except ValueError as exc:
        raise ValidationFailed(f"Invalid request: to_number: {exc}") from None


def aware_datetime(name: str, value: str) -> datetime:
    """An ISO 8601 date and time with its offset (``Z`` or ``+hh:mm``); naive is a 400."""
    value = _SPACED_OFFSET.sub(r"\1+\2", value)
    problem = unstorable(value)
    try:
        if problem or "T" not in value.upper():
            raise ValueError
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationFailed(
            f"Invalid request: {name}: {value!r} is not an ISO 8601 date and time "
            "(like 2026-03-02T15:00:00Z)"
        ) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValidationFailed(
            f"Invalid request: {name}: {value!r} has no time zone; add Z or an offset "
            "(+hh:mm): a time without one is ambiguous"
        )
    try:
        return datetime_in_range(parsed)
    except (ValueError, OverflowError) as exc:
        raise ValidationFailed(f"Invalid request: {name}: {exc}") from None
