"""Retry a short transaction once when the connection under it turned out to be dead.

Without ``pool_pre_ping`` a connection PostgreSQL dropped (failover, restart, idle kill)
fails on first use; SQLAlchemy then invalidates it, and a second try gets a fresh one.
Only errors that say the connection was lost are retried, never a failed statement.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError

T = TypeVar("T")


def on_fresh_connection(work: Callable[[], T]) -> T:
    try:
        return work()
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        return work()
