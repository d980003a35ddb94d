"""The receiver's 5-minute window is read from the injected clock; the signature is
still the ``standardwebhooks`` package's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time

from tests.support.webhooks_in import event, new_secret, signed
from worker.clock import SystemClock
from worker.platform_events.signature import BadSignature, parse_secrets, verify

SECRET = new_secret()
BODY = event("call.report", {"session_id": "s"})
AT = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)  # years from the wall clock


@pytest.mark.parametrize(
    "skew", [timedelta(0), timedelta(minutes=-4, seconds=-59), timedelta(minutes=5)]
)
def test_a_timestamp_within_five_minutes_of_the_injected_clock_verifies(skew: timedelta) -> None:
    raw, headers = signed(SECRET, BODY, at=AT + skew)
    verify(parse_secrets(SECRET, lambda: AT), raw, headers)


@pytest.mark.parametrize(
    "skew", [timedelta(minutes=-5, seconds=-2), timedelta(minutes=5, seconds=2)]
)
def test_a_timestamp_more_than_five_minutes_off_the_injected_clock_is_refused(
    skew: timedelta,
) -> None:
    raw, headers = signed(SECRET, BODY, at=AT + skew)
    with pytest.raises(BadSignature, match="timestamp too"):
        verify(parse_secrets(SECRET, lambda: AT), raw, headers)


def test_the_wall_clock_is_not_what_decides() -> None:
    # Signed now by the wall clock: refused by a receiver whose clock says AT.
    raw, headers = signed(SECRET, BODY)
    with pytest.raises(BadSignature, match="timestamp too old"):
        verify(parse_secrets(SECRET, lambda: AT), raw, headers)


def test_the_system_clock_under_freezegun_moves_the_window() -> None:
    hooks = parse_secrets(SECRET, SystemClock().now)
    raw, headers = signed(SECRET, BODY, at=AT)
    with freeze_time(AT + timedelta(minutes=4)):
        verify(hooks, raw, headers)
    with freeze_time(AT + timedelta(minutes=6)), pytest.raises(BadSignature):
        verify(hooks, raw, headers)


def test_a_wrong_signature_within_the_window_is_still_refused_by_the_package() -> None:
    raw, headers = signed(new_secret(), BODY, at=AT)
    with pytest.raises(BadSignature, match="No matching signature"):
        verify(parse_secrets(SECRET, lambda: AT), raw, headers)


@pytest.mark.parametrize("stamp", ["soon", "1e400", "-1e20"])
def test_an_unreadable_timestamp_is_refused(stamp: str) -> None:
    raw, headers = signed(SECRET, BODY, at=AT)
    with pytest.raises(BadSignature):
        verify(parse_secrets(SECRET, lambda: AT), raw, headers | {"webhook-timestamp": stamp})
