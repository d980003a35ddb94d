from datetime import UTC, datetime

import pytest

from worker.dialer.port import OutcomeKind
from worker.dialer.speko import classify, parse_retry_after

GOOD = (
    b'{"sessionId":"sess_1","callControlId":"c","roomName":"r",'
    b'"status":"dialing","to":"+1","from":"+1"}'
)


def test_200_with_session_id_is_placed() -> None:
    outcome = classify(200, GOOD, None)
    assert outcome.kind is OutcomeKind.PLACED
    assert outcome.session_id == "sess_1"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<html>ok</html>",
        b"[]",
        b'{"status":"dialing"}',
        b'{"sessionId": ""}',
        b'{"sessionId": 5}',
    ],
)
def test_2xx_without_a_readable_session_is_unknown_never_retried(body: bytes) -> None:
    outcome = classify(200, body, None)
    assert outcome.kind is OutcomeKind.UNKNOWN
    assert "may have been placed" in outcome.cause


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, OutcomeKind.PERMANENT),
        (404, OutcomeKind.PERMANENT),
        (409, OutcomeKind.PERMANENT),
        (422, OutcomeKind.PERMANENT),
        (401, OutcomeKind.KEY_REJECTED),
        (403, OutcomeKind.KEY_REJECTED),
        (408, OutcomeKind.TRANSIENT),
        (425, OutcomeKind.TRANSIENT),
        (429, OutcomeKind.TRANSIENT),
        (500, OutcomeKind.TRANSIENT),
        (502, OutcomeKind.TRANSIENT),
        (503, OutcomeKind.TRANSIENT),
    ],
)
def test_error_statuses_map_to_the_dialer_contract(status: int, kind: OutcomeKind) -> None:
    outcome = classify(status, b'{"error":"agent not found","code":"NOT_FOUND"}', None)
    assert outcome.kind is kind
    assert outcome.http_status == status
    assert outcome.provider_code == "NOT_FOUND"
    assert f"HTTP {status}" in outcome.cause
    assert "agent not found" in outcome.cause


def test_error_without_json_body_still_says_what_came_back() -> None:
    outcome = classify(502, b"Bad Gateway", None)
    assert outcome.cause == "HTTP 502: Bad Gateway"


def test_retry_after_seconds_and_http_date() -> None:
    now = datetime(2026, 3, 2, 15, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Mon, 02 Mar 2026 15:00:30 GMT", now) == 30.0
    assert parse_retry_after("Mon, 02 Mar 2026 14:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    assert classify(429, b"{}", "12").retry_after == 12.0
