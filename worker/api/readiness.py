"""``/readyz``'s verdict: the database and the broker answer. Cached for a second (by the
injected clock), so any number of probes calling every second cost one check a second."""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from worker.api.broker import Probe
from worker.clock import Clock

log = logging.getLogger(__name__)

VERDICT_TTL = timedelta(seconds=1)


class Readiness:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        broker_probe: Probe,
        clock: Clock,
        ttl: timedelta = VERDICT_TTL,
    ) -> None:
        self.sessions = sessions
        self.broker_probe = broker_probe
        self.clock = clock
        self.ttl = ttl
        self.lock = threading.Lock()
        self.checked_at: datetime | None = None
        self.down: list[str] = []

    def unreachable(self) -> list[str]:
        """What is down (empty when ready). Concurrent callers wait for one check."""
        with self.lock:
            now = self.clock.now()
            if self.checked_at is None or not (self.checked_at <= now < self.checked_at + self.ttl):
                self.down = self._check()
                self.checked_at = now
            return list(self.down)

    def _check(self) -> list[str]:
        down = []
        try:
            with self.sessions() as session:
                session.execute(text("SELECT 1"))
        except Exception as exc:
            log.warning("not ready: database unreachable (%s)", type(exc).__name__)
            down.append("database")
        try:
            self.broker_probe()
        except Exception as exc:
            log.warning("not ready: broker unreachable (%s)", type(exc).__name__)
            down.append("broker")
        return down
