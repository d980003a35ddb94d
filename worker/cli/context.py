"""What a CLI command needs, built once: the settings, a ready database and the clock;
the engine is disposed of when the command is done."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy.orm import Session, sessionmaker

from worker.cli.database import ready_engine
from worker.clock import Clock, SystemClock
from worker.db.engine import make_sessions
from worker.settings import Settings, load_settings

T = TypeVar("T")


@dataclass(frozen=True)
class CliContext:
    settings: Settings
    sessions: sessionmaker[Session]
    clock: Clock


@contextmanager
def cli_context(settings: Settings | None = None) -> Iterator[CliContext]:
    """The settings (from the environment unless given) and a database whose schema is at
    head (:func:`worker.cli.database.ready_engine`: raises ``DatabaseNotReady``)."""
    settings = settings or load_settings()
    with ready_engine(settings) as engine:
        yield CliContext(settings, make_sessions(engine), SystemClock())


def with_session(settings: Settings, work: Callable[[Session], T], *, write: bool) -> T:
    """Run ``work`` in one transaction on a ready database; raises DatabaseNotReady."""
    with cli_context(settings) as ctx:
        if write:
            with ctx.sessions.begin() as session:
                return work(session)
        with ctx.sessions() as session:
            return work(session)
