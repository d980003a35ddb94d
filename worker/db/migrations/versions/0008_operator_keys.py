"""operator keys and the console: sessions, an audit of unmasked reads, two indexes

- ``api_keys.operator``: a key that sees every organization (``callbacks api-key create
  --operator``). Its ``organization_id`` is a placeholder no organization can have, so a
  route that does not know operators scopes such a key to nothing (fails closed).
- ``console_sessions``: server-side sessions, so sign-out and key revocation end them
  at once in every API process (a signed cookie could not be revoked); only a SHA-256
  of the cookie is stored.
- ``console_audit``: who asked to see phone numbers unmasked, and other reads worth a
  record that are not a callback's transition.
- ``ix_callbacks_created``: an operator's list across organizations, newest first,
  walks it backwards instead of sorting the whole table.
- ``ix_callback_events_at``: the overview's per-minute charts read the last hours of
  the history, not all of it.

Revision ID: 0008_operator_keys
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from worker.db.types import JsonDocument, UTCDateTime

revision: str = "0008_operator_keys"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(
            sa.Column("operator", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_table(
        "console_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=40), nullable=False),
        sa.Column("csrf", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["key_id"], ["api_keys.id"], name=op.f("fk_console_sessions_key_id_api_keys")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_sessions")),
    )
    op.create_index(op.f("ix_console_sessions_expires_at"), "console_sessions", ["expires_at"])
    op.create_table(
        "console_audit",
        sa.Column("id", _BIGINT, autoincrement=True, nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("key_id", sa.String(length=40), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("detail", JsonDocument, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_audit")),
    )
    op.create_index(op.f("ix_console_audit_at"), "console_audit", ["at"])
    op.create_index("ix_callbacks_created", "callbacks", ["created_at", "id"])
    op.create_index("ix_callback_events_at", "callback_events", ["at"])


def downgrade() -> None:
    op.drop_index("ix_callback_events_at", table_name="callback_events")
    op.drop_index("ix_callbacks_created", table_name="callbacks")
    op.drop_index(op.f("ix_console_audit_at"), table_name="console_audit")
    op.drop_table("console_audit")
    op.drop_index(op.f("ix_console_sessions_expires_at"), table_name="console_sessions")
    op.drop_table("console_sessions")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("operator")
