"""Riding out a database that went away: a dropped connection, a restart, a failover.

Two cases, told apart by :func:`unavailable`:

- A connection PostgreSQL dropped (restart, failover, idle kill) fails on first use (there
  is no ``pool_pre_ping`` on the worker's engine); SQLAlchemy invalidates it and a second
  try gets a fresh one: :func:`on_fresh_connection`.
- The server refuses connections for a while (stopped, restarting, shutting down, a
  failover in progress): :func:`while_unavailable` retries with capped backoff until the
  caller's deadline, so work resumes within about a second of the server answering again.

Only errors that say the server or the connection is gone are retried, never a failed
statement (a constraint, a syntax error, a serialization failure: those are the
caller's to handle).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import psycopg
from sqlalchemy.exc import DBAPIError

log = logging.getLogger(__name__)

T = TypeVar("T")

# SQLSTATE classes that mean "no usable server": 08 connection exception, 57P admin
# shutdown / crash shutdown / cannot connect now (starting up, shutting down).
_UNAVAILABLE_STATES = ("08", "57P")


def unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database cannot be reached (as opposed to a failed statement)."""
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    if isinstance(orig, psycopg.OperationalError):
        # A failed connect carries no SQLSTATE ("connection refused", a timeout); the
        # server's own refusals carry 57P03 and friends.
        state = orig.sqlstate
        return state is None or state.startswith(_UNAVAILABLE_STATES)
    return False


def on_fresh_connection(work: Callable[[], T]) -> T:
    try:
        return work()
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        return work()


@dataclass(frozen=True)
class Backoff:
    """How often to knock while the database is away: quickly at first, then every ``cap``.

    The cap bounds how late work resumes after the server answers again (at most ``cap``
    plus one connect); a connect to a down server is refused at once, so knocking every
    second costs nothing worth saving.
    """

    first: float = 0.1
    cap: float = 1.0

    def delay(self, tries: int) -> float:
        return min(self.cap, self.first * 2.0 ** max(tries - 1, 0))


def while_unavailable(
    work: Callable[[], T],
    *,
    what: str,
    give_up: Callable[[], bool],
    sleep: Callable[[float], None] = time.sleep,
    backoff: Backoff = Backoff(),
) -> T:
    """Run ``work``; while the database is unavailable, wait and run it again.

    ``give_up()`` is asked before each wait: once it says so, the last error is raised
    (the caller's lease is ending and the reaper takes over). ``work`` must be one
    transaction that is safe to run again (its own guards tell a landed commit).
    """
    tries = 0
    began = time.monotonic()
    while True:
        try:
            result = work()
        except DBAPIError as exc:
            if not unavailable(exc) or give_up():
                raise
            tries += 1
            wait = backoff.delay(tries)
            if tries == 1 or tries % 10 == 0:
                log.warning(
                    "%s: database unavailable (%s); retrying every %.1fs at most (try %d)",
                    what,
                    _short(exc),
                    backoff.cap,
                    tries,
                )
            sleep(wait)
            continue
        if tries:
            log.warning(
                "%s: database back after %d tries (%.1fs)", what, tries, time.monotonic() - began
            )
        return result


def _short(exc: DBAPIError) -> str:
    text = str(exc.orig or exc).strip().splitlines()
    return text[0][:160] if text else type(exc).__name__
