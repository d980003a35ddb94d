"""callbacks.claimed_at: when the current claim was made (issue 13, backpressure)

The poller claims only what the workers will start soon: it counts the claims not yet
started (``dispatching``, no attempt in flight) and keeps them under the claim window.
``claimed_at`` tells a claim that is waiting its turn from one whose message was lost
(no longer counted once older than the window's staleness), and gives the wait between
claim and attempt start that ``callbacks status`` and the metrics show. Nullable: rows
claimed before this revision have none, and count as not waiting.

Revision ID: 0009_claim_window
Revises: 0008_operator_keys
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from worker.db.types import UTCDateTime

revision: str = "0009_claim_window"
down_revision: str | None = "0008_operator_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("callbacks") as batch:
        batch.add_column(sa.Column("claimed_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("callbacks") as batch:
        batch.drop_column("claimed_at")
