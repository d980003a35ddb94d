"""The composition root for a worker or beat process: settings in, parts out.

Built once per process, lazily (after a prefork child has forked, never at import).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from worker.backpressure import ClaimWindow
from worker.clock import Clock, SystemClock
from worker.db.engine import make_engine, make_sessions
from worker.dialer.log import LogDialer
from worker.dialer.port import ConcurrentDialer, Dialer
from worker.dialer.speko import SpekoDialer
from worker.dispatch import Dispatcher
from worker.policy import DispatchPolicy
from worker.poller import PollLimits
from worker.retry import RetryPolicy
from worker.settings import ConfigurationError, Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    clock: Clock
    dispatcher: Dispatcher
    limits: PollLimits

    def close(self) -> None:
        if self.dispatcher.dials is not None:
            self.dispatcher.dials.shutdown(wait=True)
        self.dispatcher.dialer.close()
        self.engine.dispose()


NO_DIALER = (
    "invalid configuration:\n  SPEKO_API_URL: not set, and this is not the embedded mode "
    "(DATABASE_URL is not SQLite). A worker without it would mark callbacks dispatched and "
    "call no one. Set SPEKO_API_URL and SPEKO_API_KEY, or DIALER=log to run on purpose "
    "without placing any call (demos, tests)."
)


def require_dialer(settings: Settings) -> None:
    """Refuse to start a worker or beat that would dispatch callbacks to nobody."""
    if settings.effective_dialer is None:
        raise ConfigurationError(NO_DIALER)


def build_dialer(settings: Settings) -> Dialer:
    require_dialer(settings)
    if settings.effective_dialer == "log":
        log.warning(
            "log-only dialer (%s): NO CALL IS PLACED; callbacks are marked dispatched "
            "with a session id starting %r",
            "DIALER=log" if settings.dialer == "log" else "embedded mode",
            LogDialer.SESSION_PREFIX,
        )
        return LogDialer()
    return SpekoDialer(
        str(settings.speko_api_url),
        settings.speko_api_key or "",
        connect_timeout=settings.dialer_connect_timeout,
        read_timeout=settings.dialer_read_timeout,
        pool_size=settings.dialer_pool_size or settings.dials_in_flight,
    )


def dispatch_policy(settings: Settings) -> DispatchPolicy:
    longest_dial = settings.dialer_connect_timeout + settings.dialer_read_timeout
    return DispatchPolicy(
        claim_lease=timedelta(seconds=settings.claim_lease),
        # Well past the longest dial, so a live attempt is never taken for a dead one.
        attempt_lease=timedelta(seconds=settings.attempt_lease or longest_dial * 4 + 60),
        retry=RetryPolicy(
            max_attempts=settings.retry_max_attempts,
            base_delay=settings.retry_base_delay,
            max_delay=max(settings.retry_max_delay, settings.retry_base_delay),
        ),
        key_rejected_hold=timedelta(seconds=settings.key_rejected_hold),
        lateness=settings.lateness,
        redial_unknown=settings.unknown_outcome_policy == "redial-same-key",
        pacing=settings.pacing,
    )


def build_runtime(settings: Settings, *, clock: Clock | None = None) -> Runtime:
    engine = make_engine(
        settings.effective_database_url,
        # One kept connection per Celery thread. A thread holds one only for its short
        # transactions, never while dialing; but 4 (a quarter of the threads) let a
        # draining worker overflow on every burst, opening and closing a connection (and a
        # PostgreSQL backend) each time: 8 % of its CPU (tests/perf, py-spy).
        pool_size=settings.effective_concurrency,
        max_overflow=2,
    )
    sessions = make_sessions(engine)
    clock = clock or SystemClock()
    dialer = build_dialer(settings)
    # A dialer with an event loop of its own needs no thread per dial in flight; for the
    # others, threads start on demand, so an idle worker does not hold dials_in_flight.
    dials = (
        None
        if isinstance(dialer, ConcurrentDialer)
        else ThreadPoolExecutor(settings.dials_in_flight, thread_name_prefix="dial")
    )
    dispatcher = Dispatcher(sessions, clock, dialer, dispatch_policy(settings), dials)
    window = ClaimWindow(
        settings.effective_claim_window,
        stale=timedelta(seconds=settings.claim_window_stale),
        top_up=min(settings.dispatch_batch_size, settings.effective_claim_window),
    )
    limits = PollLimits(settings.poll_batch_size, settings.poll_max_per_tick, window)
    return Runtime(settings, engine, sessions, clock, dispatcher, limits)
