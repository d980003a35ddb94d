"""Running every migration yields exactly the schema the models declare, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text

from worker.db.migrate import upgrade
from worker.db.models import Base


def _diff(url: str) -> list[object]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return list(compare_metadata(MigrationContext.configure(conn), Base.metadata))
    finally:
        engine.dispose()


def test_postgres_schema_matches_models(pg_url: str) -> None:
    assert _diff(pg_url) == []


def test_sqlite_schema_matches_models(sqlite_url: str) -> None:
    assert _diff(sqlite_url) == []


def test_migrate_is_idempotent(sqlite_url: str, pg_url: str) -> None:
    upgrade(sqlite_url)
    upgrade(pg_url)
    assert _diff(sqlite_url) == []
    assert _diff(pg_url) == []


def test_postgres_callbacks_table_vacuums_early(pg_url: str) -> None:
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            options = conn.execute(
                text("SELECT reloptions FROM pg_class WHERE relname = 'callbacks'")
            ).scalar_one()
    finally:
        engine.dispose()
    assert "autovacuum_vacuum_scale_factor=0.01" in options
    assert "autovacuum_vacuum_cost_delay=0" in options
