"""calling windows and pacing: org_configs, org_pacing, per-organization due index

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from worker.db.types import UTCDateTime

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SCHEDULED = sa.text("status = 'scheduled'")


def upgrade() -> None:
    op.create_table(
        "org_configs",
        sa.Column("organization_id", sa.String(length=128), nullable=False),
        sa.Column("window_start", sa.Integer(), nullable=True),
        sa.Column("window_end", sa.Integer(), nullable=True),
        sa.Column("window_days", sa.Integer(), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=True),
        sa.Column("max_concurrent", sa.Integer(), nullable=True),
        sa.Column("max_concurrent_per_number", sa.Integer(), nullable=True),
        sa.Column("max_dials_per_minute", sa.Integer(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("organization_id", name=op.f("pk_org_configs")),
    )
    op.create_table(
        "org_pacing",
        sa.Column("organization_id", sa.String(length=128), nullable=False),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("refilled_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("organization_id", name=op.f("pk_org_pacing")),
    )
    with op.batch_alter_table("callbacks", schema=None) as batch_op:
        batch_op.create_index(
            "ix_callbacks_org_due",
            ["organization_id", "due_at", "scheduled_at", "id"],
            unique=False,
            postgresql_where=_SCHEDULED,
            sqlite_where=_SCHEDULED,
        )


def downgrade() -> None:
    with op.batch_alter_table("callbacks", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_callbacks_org_due", postgresql_where=_SCHEDULED, sqlite_where=_SCHEDULED
        )
    op.drop_table("org_pacing")
    op.drop_table("org_configs")
