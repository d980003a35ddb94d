"""The log-only dialer: places nothing, says what it would have placed.

The embedded default and demos use it (outside the embedded mode only with ``DIALER=log``);
it is a real implementation of the port, so the tests use it as their fake too. What it
records must never pass for a real call: its session ids start ``logdialer-no-call-``
and the history of each callback it "placed" says that no call was placed.
"""

from __future__ import annotations

import logging
import threading

from worker.dialer.port import DialOutcome, DialRequest, OutcomeKind

log = logging.getLogger(__name__)


class LogDialer:
    SESSION_PREFIX = "logdialer-no-call-"
    NOTE = "log-only dialer: no call was placed"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.placed: list[DialRequest] = []

    def dial(self, request: DialRequest) -> DialOutcome:
        with self._lock:
            self.placed.append(request)
        to = str(request.body["to"])
        log.info(
            "callback %s: would call ...%s (log dialer, nothing placed)",
            request.callback_id,
            to[-4:],
        )
        # No HTTP status: nothing was sent anywhere. The cause is what history shows.
        return DialOutcome(
            OutcomeKind.PLACED,
            session_id=f"{self.SESSION_PREFIX}{request.idempotency_key}",
            http_status=None,
            cause=self.NOTE,
        )

    def close(self) -> None:
        return None
