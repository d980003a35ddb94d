"""Persistence: the ORM models, the engine, and the Alembic migrations."""
