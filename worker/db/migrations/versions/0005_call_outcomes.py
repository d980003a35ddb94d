"""platform events in, and the outcome of every call placed (issue 14)

``platform_events``: each webhook of the platform (``POST /webhooks/speko``), stored
before it is acknowledged, unique by its ``webhook-id``; processed later by a worker.
``callbacks.call_outcome`` / ``call_outcome_at``: what became of the call a dispatched
callback placed; ``created_session_id`` is indexed, as events find their callback by it;
``outcome_pull_at`` / ``outcome_pulls``: when to pull an outcome that did not arrive.
``org_configs.redial_*``: an organization's redial policy (``callbacks org-redial``).

Revision ID: 0005_call_outcomes
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from worker.db.types import JsonDocument, UTCDateTime

revision: str = "0005_call_outcomes"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HAS_SESSION = sa.text("created_session_id IS NOT NULL")
UNPROCESSED = sa.text("processed_at IS NULL")
HAS_OUTCOME = sa.text("call_outcome_at IS NOT NULL")
OUTCOME_PENDING = sa.text("status = 'dispatched' AND call_outcome IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("callbacks") as batch:
        batch.add_column(sa.Column("call_outcome", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("call_outcome_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("outcome_pull_at", UTCDateTime(), nullable=True))
        batch.add_column(
            sa.Column("outcome_pulls", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
    op.create_index(
        "ix_callbacks_created_session",
        "callbacks",
        ["created_session_id"],
        postgresql_where=HAS_SESSION,
        sqlite_where=HAS_SESSION,
    )
    with op.batch_alter_table("org_configs") as batch:
        batch.add_column(sa.Column("redial_max", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("redial_on", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("redial_intervals", sa.String(length=128), nullable=True))
    op.create_index(
        "ix_callbacks_outcome_pending",
        "callbacks",
        ["dispatched_at"],
        postgresql_where=OUTCOME_PENDING,
        sqlite_where=OUTCOME_PENDING,
    )
    op.create_index(
        "ix_callbacks_call_outcome_at",
        "callbacks",
        ["call_outcome_at"],
        postgresql_where=HAS_OUTCOME,
        sqlite_where=HAS_OUTCOME,
    )
    op.create_table(
        "platform_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("webhook_id", sa.String(length=256), nullable=False),
        sa.Column("type", sa.String(length=128), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("payload", JsonDocument, nullable=False),
        sa.Column("processed_at", UTCDateTime(), nullable=True),
        sa.Column("result", sa.String(length=32), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("callback_id", sa.String(length=40), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_platform_events"),
        sa.UniqueConstraint("webhook_id", name="uq_platform_events_webhook_id"),
    )
    op.create_index(
        "ix_platform_events_unprocessed",
        "platform_events",
        ["received_at"],
        postgresql_where=UNPROCESSED,
        sqlite_where=UNPROCESSED,
    )
    op.create_index("ix_platform_events_processed", "platform_events", ["processed_at"])


def downgrade() -> None:
    op.drop_index("ix_platform_events_processed", table_name="platform_events")
    op.drop_index("ix_platform_events_unprocessed", table_name="platform_events")
    op.drop_table("platform_events")
    op.drop_index("ix_callbacks_call_outcome_at", table_name="callbacks")
    op.drop_index("ix_callbacks_outcome_pending", table_name="callbacks")
    with op.batch_alter_table("org_configs") as batch:
        batch.drop_column("redial_intervals")
        batch.drop_column("redial_on")
        batch.drop_column("redial_max")
    op.drop_index("ix_callbacks_created_session", table_name="callbacks")
    with op.batch_alter_table("callbacks") as batch:
        batch.drop_column("outcome_pulls")
        batch.drop_column("outcome_pull_at")
        batch.drop_column("call_outcome_at")
        batch.drop_column("call_outcome")
