"""The CLI's way into the database: ready, or one line that says what is wrong and what
to do (exit code 2), never a traceback, never SQL or the values in it (phone numbers)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from worker.db import migrate as migrations
from worker.db.engine import make_engine
from worker.settings import Settings

MIGRATE_FIRST = "run `callbacks migrate` first"


class DatabaseNotReady(Exception):
    """The one line to print; the command exits 2."""


def _where(url: str) -> str:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return f"the SQLite file {parsed.database}"
    return f"PostgreSQL at {parsed.host or 'localhost'}:{parsed.port or 5432}/{parsed.database}"


def unreachable(url: str, exc: BaseException) -> DatabaseNotReady:
    # Only the first line of the driver's own words: connection errors name the host and
    # the reason, never a statement or its parameters.
    orig = getattr(exc, "orig", None) or exc
    reason = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    return DatabaseNotReady(
        f"cannot reach the database ({_where(url)}): {reason}. "
        "Check DATABASE_URL and that the database is up."
    )


def _missing_sqlite_file(url: str) -> bool:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return False
    return not Path(parsed.database or "").exists()


@contextmanager
def ready_engine(settings: Settings) -> Iterator[Engine]:
    """An engine on a database whose schema is at head.

    The embedded default (no DATABASE_URL: a SQLite file in DATA_DIR) migrates itself, so a
    fresh clone needs no separate step; any other database must have been migrated.
    """
    url = settings.effective_database_url
    if not settings.database_url:
        try:
            migrations.upgrade(url)
        except (SQLAlchemyError, OSError) as exc:
            raise unreachable(url, exc) from None
    elif _missing_sqlite_file(url):
        # Connecting would create an empty file and then report it has no schema.
        raise DatabaseNotReady(f"there is no database at {_where(url)}: {MIGRATE_FIRST}")
    engine = make_engine(url)
    try:
        try:
            problem = migrations.schema_problem(engine)
        except SQLAlchemyError as exc:
            raise unreachable(url, exc) from None
        if problem:
            raise DatabaseNotReady(f"{problem} ({_where(url)}): {MIGRATE_FIRST}")
        try:
            yield engine
        except IntegrityError:
            raise
        except DBAPIError as exc:
            # The statement and its parameters (phone numbers) stay out of the message.
            orig = type(exc.orig).__name__ if exc.orig is not None else type(exc).__name__
            raise DatabaseNotReady(
                f"the database refused the operation ({orig}); nothing was changed. "
                f"Check the database ({_where(url)}) and that `callbacks migrate` has run."
            ) from None
    finally:
        engine.dispose()
