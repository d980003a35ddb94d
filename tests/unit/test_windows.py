"""Calling windows, pure: DST in the US and EU, Arizona, numbers in two zones, non-US
numbers, windows across midnight."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from worker.pacing.windows import (
    EVERY_DAY,
    NoCommonWindow,
    Window,
    callee_zones,
    describe_closed,
    next_eligible,
    next_eligible_cached,
    parse_days,
)

DEFAULT = Window()


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def z(*names: str) -> tuple[ZoneInfo, ...]:
    return tuple(ZoneInfo(n) for n in names)


def test_inside_the_window_is_now_and_23_00_waits_for_08_00_next_day() -> None:
    chicago = z("America/Chicago")
    noon = utc(2026, 1, 15, 18, 0)  # 12:00 CST
    assert next_eligible(noon, chicago, DEFAULT) == noon
    late = utc(2026, 1, 16, 5, 0)  # 23:00 CST on the 15th
    assert next_eligible(late, chicago, DEFAULT) == utc(2026, 1, 16, 14, 0)  # 08:00 CST
    assert describe_closed(late, chicago, DEFAULT) == (
        "23:00 in America/Chicago is outside 08:00\u201321:00"
    )


def test_edges_start_inclusive_end_exclusive() -> None:
    ny = z("America/New_York")
    assert next_eligible(utc(2026, 1, 15, 13, 0), ny, DEFAULT) == utc(2026, 1, 15, 13, 0)
    closing = utc(2026, 1, 16, 2, 0)  # 21:00 EST
    assert next_eligible(closing, ny, DEFAULT) == utc(2026, 1, 16, 13, 0)
    just_before = utc(2026, 1, 16, 1, 59, 59)
    assert next_eligible(just_before, ny, DEFAULT) == just_before


@pytest.mark.parametrize(
    ("zone", "now", "opens"),
    [
        # US spring forward (2026-03-08 02:00 EST -> 03:00 EDT): 08:00 is EDT, 12:00 UTC
        ("America/New_York", utc(2026, 3, 8, 6, 30), utc(2026, 3, 8, 12, 0)),
        # US fall back (2026-11-01 02:00 CDT -> 01:00 CST): 08:00 is CST, 14:00 UTC
        ("America/Chicago", utc(2026, 11, 1, 4, 0), utc(2026, 11, 1, 14, 0)),
        # EU spring forward (2026-03-29 01:00 UTC): 07:00 CEST waits for 08:00 CEST
        ("Europe/Berlin", utc(2026, 3, 29, 5, 0), utc(2026, 3, 29, 6, 0)),
        # EU fall back (2026-10-25 01:00 UTC): 07:30 CET waits for 08:00 CET
        ("Europe/London", utc(2026, 10, 25, 7, 30), utc(2026, 10, 25, 8, 0)),
        # Arizona keeps MST all summer: 07:30 MST, while Denver is already 08:30 MDT
        ("America/Phoenix", utc(2026, 7, 1, 14, 30), utc(2026, 7, 1, 15, 0)),
    ],
)
def test_dst_transitions_and_arizona(zone: str, now: datetime, opens: datetime) -> None:
    assert next_eligible(now, z(zone), DEFAULT) == opens
    assert next_eligible(now, z("America/Denver"), DEFAULT) != opens or zone != "America/Phoenix"


def test_an_opening_inside_a_spring_forward_gap_opens_right_after_the_gap() -> None:
    window = Window.parse("02:30", "21:00")
    # 2026-03-08 in New York: 02:30 does not exist; the window opens at 03:00 EDT.
    opened = next_eligible(utc(2026, 3, 8, 6, 0), z("America/New_York"), window)
    assert opened.astimezone(ZoneInfo("America/New_York")).hour == 3
    assert window.contains(opened.astimezone(ZoneInfo("America/New_York")))


def test_fall_back_repeated_hour_is_judged_by_wall_clock_both_times() -> None:
    window = Window.parse("01:00", "21:00")
    chicago = z("America/Chicago")
    first = utc(2026, 11, 1, 6, 30)  # 01:30 CDT
    second = utc(2026, 11, 1, 7, 30)  # 01:30 CST
    assert next_eligible(first, chicago, window) == first
    assert next_eligible(second, chicago, window) == second


def test_a_number_in_two_zones_waits_until_the_window_holds_in_both() -> None:
    found = callee_zones("+16055550123", explicit=None, org_zone=None, fallback="UTC")
    assert found.source == "number"
    assert {zi.key for zi in found.zones} == {"America/Denver", "America/North_Dakota/Center"}
    # 07:30 CST / 06:30 MST: both closed; Denver opens last, at 15:00 UTC.
    assert next_eligible(utc(2026, 1, 15, 13, 30), found.zones, DEFAULT) == utc(2026, 1, 15, 15)
    # 20:30 MST / 21:30 CST: Central has closed; wait for tomorrow's Mountain opening.
    evening = utc(2026, 1, 16, 3, 30)
    assert next_eligible(evening, found.zones, DEFAULT) == utc(2026, 1, 16, 15)
    assert "21:30 in America/North_Dakota/Center" in describe_closed(evening, found.zones, DEFAULT)


@pytest.mark.parametrize(
    ("number", "zone", "now", "opens"),
    [
        ("+4915123456789", "Europe/Berlin", utc(2026, 6, 1, 20, 0), utc(2026, 6, 2, 6, 0)),
        ("+81312345678", "Asia/Tokyo", utc(2026, 6, 1, 20, 0), utc(2026, 6, 1, 23, 0)),
        ("+442071234567", "Europe/London", utc(2026, 1, 5, 7, 0), utc(2026, 1, 5, 8, 0)),
    ],
)
def test_non_us_numbers(number: str, zone: str, now: datetime, opens: datetime) -> None:
    found = callee_zones(number, explicit=None, org_zone=None, fallback="UTC")
    assert [zi.key for zi in found.zones] == [zone]
    assert next_eligible(now, found.zones, DEFAULT) == opens


def test_australian_mobile_spans_many_zones_and_still_has_a_common_window() -> None:
    found = callee_zones("+61412345678", explicit=None, org_zone=None, fallback="UTC")
    assert len(found.zones) > 3
    at = next_eligible(utc(2026, 1, 15, 12, 0), found.zones, DEFAULT)
    assert all(DEFAULT.contains(at.astimezone(zi)) for zi in found.zones)


def test_zones_too_far_apart_have_no_common_window() -> None:
    mondays = Window.parse("08:00", "21:00", "mon")  # Kiritimati's Monday is Pago Pago's Sunday
    with pytest.raises(NoCommonWindow):
        next_eligible(utc(2026, 1, 15), z("Pacific/Kiritimati", "Pacific/Pago_Pago"), mondays)


def test_zone_precedence_metadata_then_org_then_number_then_fallback() -> None:
    args = {"org_zone": "Europe/Paris", "fallback": "UTC"}
    assert callee_zones("+12015551234", explicit="Asia/Tokyo", **args).zones == z("Asia/Tokyo")
    assert callee_zones("+12015551234", explicit=None, **args).zones == z("Europe/Paris")
    # an invalid metadata.timezone is skipped, never fatal
    assert callee_zones("+12015551234", explicit="Mars/Base", **args).source == "organization"
    assert callee_zones("+12015551234", explicit=None, org_zone=None, fallback="UTC").zones == z(
        "America/New_York"
    )
    assert callee_zones("+80012345678", explicit=None, org_zone=None, fallback="UTC").source == (
        "fallback"
    )


def test_window_across_midnight_belongs_to_the_day_it_opens() -> None:
    friday_night = Window.parse("20:00", "02:00", "fri")
    ny = z("America/New_York")
    assert friday_night.crosses_midnight
    sat_0100 = utc(2026, 1, 17, 6, 0)  # Saturday 01:00 EST
    assert next_eligible(sat_0100, ny, friday_night) == sat_0100
    sat_0200 = utc(2026, 1, 17, 7, 0)  # Saturday 02:00 EST: closed until Friday 20:00
    assert next_eligible(sat_0200, ny, friday_night) == utc(2026, 1, 24, 1, 0)
    thu_0100 = utc(2026, 1, 15, 6, 0)  # Thursday 01:00: Wednesday did not open
    assert next_eligible(thu_0100, ny, friday_night) == utc(2026, 1, 17, 1, 0)


def test_days_of_week_and_bad_windows() -> None:
    assert parse_days("mon-fri") == frozenset(range(5))
    assert parse_days("fri-mon") == frozenset({4, 5, 6, 0})
    assert parse_days("sat,sun") == frozenset({5, 6})
    assert parse_days("daily") == EVERY_DAY
    weekdays = Window.parse("08:00", "21:00", "mon-fri")
    saturday = utc(2026, 1, 17, 15, 0)  # Saturday 10:00 EST
    assert next_eligible(saturday, z("America/New_York"), weekdays) == utc(2026, 1, 19, 13, 0)
    for bad in (("08:00", "08:00", None), ("8am", "21:00", None), ("08:00", "21:00", "funday")):
        with pytest.raises(ValueError, match=r"."):
            Window.parse(*bad)
    assert Window.parse("00:00", "24:00").contains(datetime(2026, 1, 1, 23, 59, tzinfo=UTC))
    with pytest.raises(ValueError, match="timezone-aware"):
        next_eligible(datetime(2026, 1, 1), z("UTC"), DEFAULT)  # noqa: DTZ001


def test_metadata_timezone_is_validated_when_the_callback_is_created() -> None:
    from worker.validation import InvalidCallback, parse_new_callbacks

    base = {
        "organization_id": "o",
        "to_number": "+12015551234",
        "scheduled_at": "2026-01-01T09:00Z",
    }
    ok = parse_new_callbacks([("", {**base, "metadata": {"timezone": "America/Chicago"}})])
    assert ok[0].metadata == {"timezone": "America/Chicago"}
    for bad in ("Mars/Base", 5, "../etc/passwd"):
        with pytest.raises(InvalidCallback, match="metadata"):
            parse_new_callbacks([("", {**base, "metadata": {"timezone": bad}})])


@pytest.mark.parametrize(
    ("zones", "window", "around"),
    [
        (("America/New_York",), DEFAULT, utc(2026, 1, 15, 13, 0)),  # opens 08:00 EST
        (("America/New_York",), DEFAULT, utc(2026, 1, 16, 2, 0)),  # closes 21:00 EST
        (("America/New_York",), DEFAULT, utc(2026, 3, 8, 7, 0)),  # spring forward
        (("America/Chicago",), DEFAULT, utc(2026, 11, 1, 7, 0)),  # fall back
        (("Asia/Kolkata",), DEFAULT, utc(2026, 5, 4, 2, 30)),  # a half-hour offset
        (("Asia/Kathmandu",), DEFAULT, utc(2026, 5, 4, 2, 15)),  # a 45-minute offset
        (("America/Chicago", "America/New_York"), DEFAULT, utc(2026, 1, 15, 14, 0)),
        (("Europe/Berlin",), Window.parse("20:00", "02:00", "fri"), utc(2026, 5, 9, 0, 0)),
    ],
)
def test_the_verdict_kept_per_minute_is_the_one_worked_out_each_time(
    zones: tuple[str, ...], window: Window, around: datetime
) -> None:
    # Every 7 s across the minutes either side of an opening or a closing: the same answer.
    for step in range(-30, 30):
        now = around + timedelta(seconds=7 * step)
        assert next_eligible_cached(now, z(*zones), window) == next_eligible(
            now, z(*zones), window
        ), now
