"""The table's filters from a query string or form, as the console's forms send them."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from worker.console.listing import Filters
from worker.datetimes import datetime_in_range
from worker.status import Status
from worker.validation import e164

NAMES = (
    "status",
    "organization_id",
    "to_number",
    "id",
    "source_session_id",
    "scheduled_after",
    "scheduled_before",
)


class BadFilter(ValueError):
    pass


def when(name: str, value: str) -> datetime:
    """ISO 8601; a time without an offset (what ``<input type=datetime-local>`` sends) is
    UTC, as the form says."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise BadFilter(f"{name}: {value!r} is not a date and time like 2026-03-02T15:00") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return datetime_in_range(parsed)
    except (ValueError, OverflowError) as exc:
        raise BadFilter(f"{name}: {exc}") from None


def parse(values: Mapping[str, str]) -> Filters:
    """Blank fields are no filter; a bad one raises :class:`BadFilter` naming it."""
    got = {k: (values.get(k) or "").strip() for k in NAMES}
    status = None
    if got["status"]:
        try:
            status = Status(got["status"])
        except ValueError:
            raise BadFilter(f"status: {got['status']!r} is not a status") from None
    number = None
    if got["to_number"]:
        raw = got["to_number"]
        if raw[0].isdigit():
            raw = "+" + raw
        try:
            number = e164(raw)
        except ValueError as exc:
            raise BadFilter(f"to_number: {exc}") from None
    after = when("scheduled_after", got["scheduled_after"]) if got["scheduled_after"] else None
    before = when("scheduled_before", got["scheduled_before"]) if got["scheduled_before"] else None
    if after is not None and before is not None and after > before:
        raise BadFilter("scheduled_after is later than scheduled_before")
    return Filters(
        status=status,
        organization_id=got["organization_id"] or None,
        to_number=number,
        id=got["id"] or None,
        source_session_id=got["source_session_id"] or None,
        scheduled_after=after,
        scheduled_before=before,
    )
