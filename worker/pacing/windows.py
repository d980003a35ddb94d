"""Calling windows: when a callee may be called, in their own local time. Pure: no I/O.

A :class:`Window` is a daily span of local wall-clock time (``08:00-21:00``) on some days
of the week. :func:`next_eligible` answers "now, or when next?" for a set of zones: a
number that maps to several zones may be called only when the window holds in all of
them. DST is handled by working in each zone's own wall clock: an opening that falls in
a spring-forward gap opens at the first instant after the gap; a fall-back hour that
repeats is inside or outside the window by its wall-clock time, both times.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as number_timezones

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
EVERY_DAY = frozenset(range(7))
DAY_MINUTES = 24 * 60
HORIZON_DAYS = 9
"""How far ahead to look for an opening: a window open one day a week, plus DST slack."""

_HHMM = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")


class NoCommonWindow(ValueError):
    """The zones never share an open moment (they are too far apart for the window)."""


def parse_hhmm(value: str) -> int:
    """``"08:00"`` → minutes after midnight; ``"24:00"`` is the end of the day."""
    m = _HHMM.match(value.strip())
    if not m or (m.group(1) == "24" and m.group(2) != "00"):
        raise ValueError(f"{value!r} is not a time of day as HH:MM (00:00 to 24:00)")
    return int(m.group(1)) * 60 + int(m.group(2))


def hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def parse_days(value: str) -> frozenset[int]:
    """``"mon-fri"``, ``"sat,sun"``, ``"fri-mon"`` (wraps), ``"daily"`` → weekday numbers."""
    text = value.strip().lower()
    if text in {"", "daily", "all", "every"}:
        return EVERY_DAY
    days: set[int] = set()
    for part in text.split(","):
        ends = [p.strip()[:3] for p in part.split("-")]
        if len(ends) > 2 or any(e not in DAYS for e in ends):
            raise ValueError(f"{part.strip()!r} is not a day or range of days (e.g. mon-fri)")
        first, last = DAYS.index(ends[0]), DAYS.index(ends[-1])
        days.update((first + i) % 7 for i in range((last - first) % 7 + 1))
    return frozenset(days)


def format_days(days: Iterable[int]) -> str:
    chosen = frozenset(days)
    return "daily" if chosen == EVERY_DAY else ",".join(DAYS[d] for d in sorted(chosen))


@dataclass(frozen=True)
class Window:
    """Open from ``start`` to ``end`` (minutes after local midnight, end exclusive).

    ``end < start`` crosses midnight (``20:00-02:00``): it belongs to the day it opens,
    so with ``days=fri`` it runs Friday 20:00 to Saturday 02:00.
    """

    start: int = 8 * 60
    end: int = 21 * 60
    days: frozenset[int] = EVERY_DAY

    def __post_init__(self) -> None:
        if not (0 <= self.start < DAY_MINUTES and 0 < self.end <= DAY_MINUTES):
            raise ValueError("window start must be 00:00-23:59 and end 00:01-24:00")
        if self.start == self.end:
            raise ValueError("window start and end are equal: give 00:00-24:00 for all day")
        if not self.days or not self.days <= EVERY_DAY:
            raise ValueError("a window needs at least one day of the week")

    @classmethod
    def parse(cls, start: str, end: str, days: str | None = None) -> Window:
        return cls(parse_hhmm(start), parse_hhmm(end), parse_days(days or "daily"))

    @property
    def crosses_midnight(self) -> bool:
        return self.end < self.start

    def label(self) -> str:
        span = f"{hhmm(self.start)}\u2013{hhmm(self.end)}"  # an en dash, as people write it
        return span if self.days == EVERY_DAY else f"{span} {format_days(self.days)}"

    def contains(self, local: datetime) -> bool:
        """Is the wall-clock time ``local`` (aware, in the callee's zone) inside?"""
        minute = local.hour * 60 + local.minute
        today = local.weekday()
        if not self.crosses_midnight:
            return today in self.days and self.start <= minute < self.end
        yesterday = (today - 1) % 7
        return (today in self.days and minute >= self.start) or (
            yesterday in self.days and minute < self.end
        )

    def openings(self, after: datetime, zone: ZoneInfo) -> list[datetime]:
        """Every opening (UTC) in ``zone`` from the day before ``after`` to the horizon."""
        first = after.astimezone(zone).date() - timedelta(days=1)
        out = []
        for offset in range(HORIZON_DAYS + 1):
            day: date = first + timedelta(days=offset)
            if day.weekday() in self.days:
                # fold=0 in a spring-forward gap resolves to the first instant after it.
                wall = datetime.combine(day, time(self.start // 60, self.start % 60), zone)
                out.append(wall.astimezone(UTC))
        return out


def next_eligible(now: datetime, zones: Sequence[ZoneInfo], window: Window) -> datetime:
    """``now`` if ``window`` is open in every zone, else the earliest later instant it is.

    The intersection of the zones' open spans starts where one of them opens, so the
    openings (and ``now``) are the only candidates to test.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if not zones:
        raise ValueError("need at least one zone")

    def open_everywhere(at: datetime) -> bool:
        return all(window.contains(at.astimezone(z)) for z in zones)

    if open_everywhere(now):
        return now
    candidates = sorted({o for z in zones for o in window.openings(now, z) if o > now})
    for at in candidates:
        if open_everywhere(at):
            return at
    names = ", ".join(z.key for z in zones)
    raise NoCommonWindow(f"{window.label()} is never open in all of {names} at once")


def next_eligible_cached(now: datetime, zones: Sequence[ZoneInfo], window: Window) -> datetime:
    """:func:`next_eligible`, worked out once per UTC minute for each set of zones and
    window instead of once per callback: the window checks were ~9 % of a draining
    worker's time (tests/perf), and a batch's callees share a handful of zones.

    Exact, not an approximation: windows open and close on whole local minutes and every
    zone's offset today is whole minutes, so whether the window is open, and when it next
    opens, is the same for every instant of a UTC minute.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    minute = now.astimezone(UTC).replace(second=0, microsecond=0)
    until = _next_eligible_from(minute, tuple(zones), window)
    return now if until is None else until


@lru_cache(maxsize=4096)
def _next_eligible_from(
    minute: datetime, zones: tuple[ZoneInfo, ...], window: Window
) -> datetime | None:
    """``None``: open throughout ``minute``; else when it next opens."""
    at = next_eligible(minute, zones, window)
    return None if at == minute else at


def describe_closed(at: datetime, zones: Sequence[ZoneInfo], window: Window) -> str:
    """``"22:14 in America/Chicago is outside 08:00-21:00"`` for the zones that are closed."""
    closed = [z for z in zones if not window.contains(at.astimezone(z))] or list(zones)
    fmt = "%H:%M" if window.days == EVERY_DAY else "%a %H:%M"
    where = ", ".join(f"{at.astimezone(z):{fmt}} in {z.key}" for z in closed)
    return f"{where} is outside {window.label()}"


# --- which zones a callee is in -------------------------------------------------------


def zone(name: str) -> ZoneInfo:
    """An IANA zone by name; ``ValueError`` (with the name) if there is no such zone."""
    if not name or name != name.strip() or name.startswith(("/", ".")) or ".." in name:
        raise ValueError(f"{name!r} is not an IANA time zone name (e.g. America/Chicago)")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not an IANA time zone name (e.g. America/Chicago)") from None


def valid_zone_name(name: str) -> str:
    zone(name)
    return name


@lru_cache(maxsize=65536)
def number_zones(e164: str) -> tuple[str, ...]:
    """The zones ``phonenumbers`` knows for a number; empty when it does not know."""
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return ()
    names = number_timezones.time_zones_for_number(parsed)
    return tuple(n for n in names if n != number_timezones.UNKNOWN_TIMEZONE)


@dataclass(frozen=True)
class CalleeZones:
    zones: tuple[ZoneInfo, ...]
    source: str
    """``metadata``, ``organization``, ``number`` or ``fallback``: for the history."""


@lru_cache(maxsize=65536)
def callee_zones(
    to_number: str, *, explicit: str | None, org_zone: str | None, fallback: str
) -> CalleeZones:
    """The callee's zone(s): ``metadata.timezone``, else the organization's override, else
    the number's (all of them), else ``fallback``. An invalid explicit name is skipped.

    Kept per number (a pure function of its arguments): parsing a number with
    phonenumbers was most of a window check's cost."""
    for name, source in ((explicit, "metadata"), (org_zone, "organization")):
        if name:
            try:
                return CalleeZones((zone(name),), source)
            except ValueError:
                continue
    from_number = number_zones(to_number)
    if from_number:
        return CalleeZones(tuple(zone(n) for n in from_number), "number")
    return CalleeZones((zone(fallback),), "fallback")
