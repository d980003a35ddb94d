"""Run the Alembic migrations programmatically (``callbacks migrate``). Idempotent.

Also tells what it did (created, upgraded from X to Y, already up to date) and lets the
other commands check the schema before they touch it (``schema_problem``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolation would read a '%' in a password as a reference.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str:
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None, "the migrations have one head"
    return head


def current_revision(engine: Engine) -> str | None:
    """The schema's revision; ``None`` when it has none (a new, empty database)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


@dataclass(frozen=True)
class Migrated:
    before: str | None
    after: str

    def describe(self) -> str:
        if self.before is None:
            return f"database schema created (revision {self.after})"
        if self.before == self.after:
            return f"database schema was already up to date (revision {self.after})"
        return f"database schema upgraded from revision {self.before} to {self.after}"


def upgrade(url: str, revision: str = "head") -> Migrated:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)
    try:
        before = current_revision(engine)
        command.upgrade(alembic_config(url), revision)
        after = current_revision(engine)
    finally:
        engine.dispose()
    assert after is not None
    return Migrated(before, after)


def schema_problem(engine: Engine) -> str | None:
    """Why the other commands cannot use this database yet, or ``None``."""
    current, head = current_revision(engine), head_revision()
    if current is None:
        return "the database has no callbacks schema yet"
    if current != head:
        return f"the database schema is at revision {current}, this version needs {head}"
    return None
