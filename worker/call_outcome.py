"""What became of a call the worker placed: ``answered``, ``no_answer``, ``busy``,
``voicemail``, ``failed`` or ``unknown``, from what the platform tells about it.

(Not :mod:`worker.outcomes`: that one is about our dial request, this one about the call.)

The platform publishes no field that says "no answer" in so many words
(``shared/spec/speko-calls-and-events.md``); :func:`classify` decides from, in order:

1. a voicemail detected (``voicemail.detected``, or a ``voicemail.detected`` event) → voicemail;
2. the SIP status of the call: 486, 600 → busy; 480, 408, 487 → no_answer; 404, 484 →
   failed; 603 (declined) → busy (the person was there and refused the call now; it is
   redialed like a busy line, never called "failed"); 200 → answered;
3. the free-text ``status``, ``failure_cause``, ``outcome`` (normalised: lower case,
   ``-``/spaces as ``_``): voicemail/machine → voicemail; busy/declined/rejected → busy;
   no_answer/not_answered/unanswered/did_not_answer → no_answer;
   invalid_number/not_found/unallocated → failed; answered/human → answered;
4. a duration of at least one second → answered (a call that was not answered has none);
5. anything else → unknown (not decisive: a later event or the pull may still decide).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class PullFailed(Exception):
    """The platform could not be read (down, timeout, 5xx): pull again later."""


class CallOutcome(StrEnum):
    ANSWERED = "answered"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    VOICEMAIL = "voicemail"
    FAILED = "failed"
    UNKNOWN = "unknown"


SIP: dict[int, CallOutcome] = {
    486: CallOutcome.BUSY,
    600: CallOutcome.BUSY,
    603: CallOutcome.BUSY,
    480: CallOutcome.NO_ANSWER,
    408: CallOutcome.NO_ANSWER,
    487: CallOutcome.NO_ANSWER,
    404: CallOutcome.FAILED,
    484: CallOutcome.FAILED,
    200: CallOutcome.ANSWERED,
}

# Checked in this order: "not_answered" must be read before "answered".
TEXT: tuple[tuple[re.Pattern[str], CallOutcome], ...] = (
    (re.compile(r"voicemail|answering_machine|machine"), CallOutcome.VOICEMAIL),
    (
        re.compile(r"no_answer|noanswer|not_answered|unanswered|did_not_answer"),
        CallOutcome.NO_ANSWER,
    ),
    (re.compile(r"busy|declined|rejected"), CallOutcome.BUSY),
    (re.compile(r"invalid_number|not_found|unallocated|does_not_exist"), CallOutcome.FAILED),
    (re.compile(r"answered|human"), CallOutcome.ANSWERED),
)


@dataclass(frozen=True)
class Signals:
    """What is known of one call, gathered from its events and report."""

    voicemail_detected: bool = False
    sip_codes: tuple[int, ...] = ()
    texts: tuple[str, ...] = ()
    duration_seconds: float | None = None

    def __add__(self, other: Signals) -> Signals:
        durations = [d for d in (self.duration_seconds, other.duration_seconds) if d is not None]
        return Signals(
            self.voicemail_detected or other.voicemail_detected,
            self.sip_codes + other.sip_codes,
            self.texts + other.texts,
            max(durations) if durations else None,
        )


def normalise(text: str) -> str:
    return re.sub(r"[\s\-]+", "_", text.strip().lower())


def classify(signals: Signals) -> CallOutcome:
    """The outcome the signals decide (see the module's table), else ``unknown``."""
    if signals.voicemail_detected:
        return CallOutcome.VOICEMAIL
    for code in signals.sip_codes:
        if code in SIP and SIP[code] is not CallOutcome.ANSWERED:
            return SIP[code]
    for text in signals.texts:
        for pattern, outcome in TEXT:
            if pattern.search(normalise(text)):
                return outcome
    if 200 in signals.sip_codes:
        return CallOutcome.ANSWERED
    if signals.duration_seconds is not None and signals.duration_seconds >= 1:
        return CallOutcome.ANSWERED
    return CallOutcome.UNKNOWN


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


@dataclass
class _Gather:
    voicemail: bool = False
    codes: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)


def signals_of(event_type: str | None, data: Mapping[str, Any]) -> Signals:
    """The signals in one event's ``data``, a ``CallEvent``, a ``CallReport`` or a
    ``CallDetail`` (their fields, and those of a nested ``payload`` or ``report``)."""
    out = _Gather()
    if event_type == "voicemail.detected" or data.get("event_type") == "voicemail.detected":
        out.voicemail = True
    _gather(data, out)
    for nested in ("payload", "report"):
        inner = data.get(nested)
        if isinstance(inner, Mapping):
            _gather(inner, out)
    return Signals(
        out.voicemail,
        tuple(out.codes),
        tuple(out.texts),
        max(out.durations) if out.durations else None,
    )


def _gather(data: Mapping[str, Any], out: _Gather) -> None:
    voicemail = data.get("voicemail")
    if isinstance(voicemail, Mapping) and voicemail.get("detected") is True:
        out.voicemail = True
    code = _int(data.get("sip_status_code"))
    if code is not None:
        out.codes.append(code)
    for key in ("status", "failure_cause", "outcome", "hangup_cause", "sip_status"):
        value = data.get(key)
        if isinstance(value, str) and value:
            out.texts.append(value)
    duration = _number(data.get("duration_seconds"))
    if duration is not None:
        out.durations.append(duration)


def combine(parts: Iterable[Signals]) -> Signals:
    total = Signals()
    for part in parts:
        total = total + part
    return total
