"""The log-only dialer: places nothing, says what it would have placed.

The embedded default and demos use it; it is a real implementation of the port, so the
tests use it as their fake too.
"""

from __future__ import annotations

import logging
import threading

from worker.dialer.port import DialOutcome, DialRequest

log = logging.getLogger(__name__)


class LogDialer:
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
        return DialOutcome.placed(f"log-{request.idempotency_key}")

    def close(self) -> None:
        return None
