"""callbacks and their history

Revision ID: 0001
Revises:
Create Date: 2026-11-27 10:13:37.839707
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from worker.db.types import UTCDateTime

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "callbacks",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("organization_id", sa.String(length=128), nullable=False),
        sa.Column("source_session_id", sa.String(length=128), nullable=True),
        sa.Column("created_session_id", sa.String(length=256), nullable=True),
        sa.Column("agent_id", sa.String(length=128), nullable=True),
        sa.Column("phone_number_id", sa.String(length=128), nullable=True),
        sa.Column("to_number", sa.String(length=16), nullable=False),
        sa.Column("from_number", sa.String(length=16), nullable=True),
        sa.Column("scheduled_at", UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("instructions", sa.Text(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column(
            "pipeline_config",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "metadata",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("failure_cause", sa.Text(), nullable=True),
        sa.Column("attempted_at", UTCDateTime(), nullable=True),
        sa.Column("dispatched_at", UTCDateTime(), nullable=True),
        sa.Column("cancelled_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("due_at", UTCDateTime(), nullable=False),
        sa.Column("lease_expires_at", UTCDateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("attempt_in_flight", sa.Boolean(), nullable=False),
        sa.Column("dispatch_round", sa.Integer(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callbacks")),
    )
    with op.batch_alter_table("callbacks", schema=None) as batch_op:
        batch_op.create_index(
            "ix_callbacks_due",
            ["due_at"],
            unique=False,
            postgresql_where=sa.text("status = 'scheduled'"),
            sqlite_where=sa.text("status = 'scheduled'"),
        )
        batch_op.create_index(
            "ix_callbacks_lease",
            ["lease_expires_at"],
            unique=False,
            postgresql_where=sa.text("status = 'dispatching'"),
            sqlite_where=sa.text("status = 'dispatching'"),
        )
        batch_op.create_index(
            "ix_callbacks_org_created", ["organization_id", "created_at", "id"], unique=False
        )
        batch_op.create_index(
            "ix_callbacks_org_source_created",
            ["organization_id", "source_session_id", "created_at", "id"],
            unique=False,
        )
        batch_op.create_index(
            "ix_callbacks_org_status_created",
            ["organization_id", "status", "created_at", "id"],
            unique=False,
        )

    op.create_table(
        "callback_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("callback_id", sa.String(length=40), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("from_status", sa.String(length=16), nullable=True),
        sa.Column("to_status", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column(
            "detail",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["callback_id"], ["callbacks.id"], name=op.f("fk_callback_events_callback_id_callbacks")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callback_events")),
    )
    with op.batch_alter_table("callback_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_callback_events_callback_id"), ["callback_id"], unique=False
        )

    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("organization_id", sa.String(length=128), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_keys_token_hash")),
    )
    op.create_index(
        op.f("ix_api_keys_organization_id"), "api_keys", ["organization_id"], unique=False
    )

    op.create_table(
        "holds",
        sa.Column("scope", sa.String(length=160), nullable=False),
        sa.Column("until", UTCDateTime(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("scope", name=op.f("pk_holds")),
    )


def downgrade() -> None:
    op.drop_table("holds")
    op.drop_index(op.f("ix_api_keys_organization_id"), table_name="api_keys")
    op.drop_table("api_keys")
    with op.batch_alter_table("callback_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_callback_events_callback_id"))

    op.drop_table("callback_events")
    with op.batch_alter_table("callbacks", schema=None) as batch_op:
        batch_op.drop_index("ix_callbacks_org_status_created")
        batch_op.drop_index("ix_callbacks_org_source_created")
        batch_op.drop_index("ix_callbacks_org_created")
        batch_op.drop_index(
            "ix_callbacks_lease",
            postgresql_where=sa.text("status = 'dispatching'"),
            sqlite_where=sa.text("status = 'dispatching'"),
        )
        batch_op.drop_index(
            "ix_callbacks_due",
            postgresql_where=sa.text("status = 'scheduled'"),
            sqlite_where=sa.text("status = 'scheduled'"),
        )

    op.drop_table("callbacks")
