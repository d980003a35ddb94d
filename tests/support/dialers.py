"""Dialers for tests: real implementations of the port that answer from a script."""

from __future__ import annotations

import threading
from collections.abc import Iterable

from worker.dialer.port import DialOutcome, DialRequest


class ScriptedDialer:
    """Answers each dial with the next scripted outcome (the last one repeats)."""

    def __init__(self, outcomes: Iterable[DialOutcome]) -> None:
        self._outcomes = list(outcomes)
        self._lock = threading.Lock()
        self.requests: list[DialRequest] = []

    def dial(self, request: DialRequest) -> DialOutcome:
        with self._lock:
            self.requests.append(request)
            index = min(len(self.requests), len(self._outcomes)) - 1
            return self._outcomes[index]

    def close(self) -> None:
        return None
