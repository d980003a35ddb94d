"""The outcome classification, as a table (README "Call outcomes")."""

from __future__ import annotations

from typing import Any

import pytest

from worker.call_outcome import CallOutcome, Signals, classify, signals_of

A, N, B, V, F, U = (
    CallOutcome.ANSWERED,
    CallOutcome.NO_ANSWER,
    CallOutcome.BUSY,
    CallOutcome.VOICEMAIL,
    CallOutcome.FAILED,
    CallOutcome.UNKNOWN,
)


@pytest.mark.parametrize(
    ("signals", "expected"),
    [
        (Signals(), U),
        (Signals(voicemail_detected=True, sip_codes=(200,), duration_seconds=30), V),
        (Signals(sip_codes=(486,)), B),
        (Signals(sip_codes=(600,)), B),
        (Signals(sip_codes=(603,)), B),
        (Signals(sip_codes=(480,)), N),
        (Signals(sip_codes=(408,)), N),
        (Signals(sip_codes=(487,)), N),
        (Signals(sip_codes=(404,)), F),
        (Signals(sip_codes=(484,)), F),
        (Signals(sip_codes=(200,)), A),
        (Signals(sip_codes=(200, 486)), B),
        (Signals(sip_codes=(503,)), U),
        (Signals(texts=("No Answer",)), N),
        (Signals(texts=("customer-did-not-answer",)), N),
        (Signals(texts=("not answered",)), N),
        (Signals(texts=("user busy",)), B),
        (Signals(texts=("Declined",)), B),
        (Signals(texts=("voicemail_reached",)), V),
        (Signals(texts=("answering machine",)), V),
        (Signals(texts=("invalid number",)), F),
        (Signals(texts=("answered",)), A),
        (Signals(texts=("ended",)), U),
        (Signals(texts=("failed",)), U),
        (Signals(texts=("ended",), duration_seconds=42.0), A),
        (Signals(duration_seconds=0.0), U),
        (Signals(texts=("no-answer",), duration_seconds=25.0), N),
    ],
)
def test_classify(signals: Signals, expected: CallOutcome) -> None:
    assert classify(signals) is expected


@pytest.mark.parametrize(
    ("event_type", "data", "expected"),
    [
        ("call.hangup", {"call_id": "c", "sip_status_code": 486}, B),
        ("call.hangup", {"payload": {"sip_status_code": "480"}}, N),
        ("voicemail.detected", {"call_id": "c"}, V),
        ("call.report", {"voicemail": {"detected": True}, "outcome": "completed"}, V),
        ("call.report", {"voicemail": {"detected": False}, "outcome": "answered"}, A),
        ("call.report", {"voicemail": None, "outcome": "x"}, U),
        ("call.ringing", {"call_id": "c"}, U),
        ("call.status", {"status": "failed", "failure_cause": "Busy Here"}, B),
        (None, {"status": "ended", "duration_seconds": 61, "report": {"outcome": "x"}}, A),
        ("call.hangup", {"sip_status_code": True, "duration_seconds": "90"}, U),
    ],
)
def test_signals_of_events_reports_and_details(
    event_type: str | None, data: dict[str, Any], expected: CallOutcome
) -> None:
    assert classify(signals_of(event_type, data)) is expected
