"""What a CLI command needs, built once: the settings, a database and the clock; the
engine is disposed of when the command is done."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from worker.clock import Clock, SystemClock
from worker.db.engine import make_engine, make_sessions
from worker.settings import Settings, load_settings


@dataclass(frozen=True)
class CliContext:
    settings: Settings
    sessions: sessionmaker[Session]
    clock: Clock


@contextmanager
def cli_context(settings: Settings | None = None) -> Iterator[CliContext]:
    """The settings (from the environment unless given) and a database for one command."""
    settings = settings or load_settings()
    engine = make_engine(settings.effective_database_url)
    try:
        yield CliContext(settings, make_sessions(engine), SystemClock())
    finally:
        engine.dispose()
