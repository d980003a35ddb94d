"""Durations said as a person would: ``6 years 11 months``, ``3 min 12 s``.

The two largest units are enough to act on; humanize's ``precisedelta`` lists every
unit down to the seconds (``6 years, 10 months, 29 days, 23 hours, 45 minutes and 53.95
seconds``) and ``naturaldelta`` keeps only one (``7 years``), so this is our own.
"""

from __future__ import annotations

import math

_YEAR = 365.2425 * 86400
# (seconds, singular, plural), largest first
_UNITS = (
    (_YEAR, "year", "years"),
    (_YEAR / 12, "month", "months"),
    (86400.0, "day", "days"),
    (3600.0, "h", "h"),
    (60.0, "min", "min"),
    (1.0, "s", "s"),
)


def _say(n: int, unit: int) -> str:
    _, one, many = _UNITS[unit]
    return f"{n} {one if n == 1 else many}"


def say_duration(seconds: float) -> str:
    """The two largest non-zero units, the second rounded: ``90061`` → ``1 day 1 h``."""
    if math.isnan(seconds) or math.isinf(seconds):
        return "unknown"
    if seconds < 0:
        return "-" + say_duration(-seconds)
    if seconds < 1:
        return f"{seconds:.1f} s" if seconds >= 0.05 else "0 s"
    first = next(i for i, (size, _, _) in enumerate(_UNITS) if seconds >= size)
    if first == len(_UNITS) - 1:
        n = round(seconds)
        return _say(n, first) if n < 60 else _say(1, first - 1)
    size, second_size = _UNITS[first][0], _UNITS[first + 1][0]
    n1 = math.floor(seconds / size)
    n2 = round((seconds - n1 * size) / second_size)
    if n2 * second_size >= size * 0.999:  # rounded up to a whole first unit
        n1, n2 = n1 + 1, 0
    if n1 * size >= _UNITS[first - 1][0] * 0.999 and first > 0:
        return _say(1, first - 1)
    return _say(n1, first) + (f" {_say(n2, first + 1)}" if n2 else "")
