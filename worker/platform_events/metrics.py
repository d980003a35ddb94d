"""Prometheus metrics of the platform's events in (issue 14)."""

from __future__ import annotations

from prometheus_client import Counter

EVENTS = Counter(
    "callbacks_platform_events",
    "Platform events processed, by type and result (invalid_callback: a report's "
    "scheduled_callback was refused)",
    ["type", "result"],
)
RECEIVED = Counter(
    "callbacks_platform_events_received",
    "Deliveries to POST /webhooks/speko, by answer (stored, duplicate, unauthorized, invalid)",
    ["answer"],
)
OUTCOMES = Counter(
    "callbacks_call_outcomes",
    "Outcomes recorded for calls placed (answered, no_answer, busy, voicemail, failed, unknown)",
    ["outcome"],
)
KNOWN_TYPES = frozenset(
    {
        "call.pre_call",
        "call.status",
        "call.report",
        "call.analysis",
        "call.recording",
        "call.initiated",
        "call.ringing",
        "call.answered",
        "call.bridged",
        "call.hangup",
        "call.leg.hangup",
        "voicemail.detected",
    }
)


def type_label(event_type: str) -> str:
    """The label for a type: any other string the platform sends is ``other`` (bounded)."""
    return event_type if event_type in KNOWN_TYPES else "other"
