"""callbacks: an index for listing by phone number (issue 16)

``GET /v1/callbacks?to_number=...`` pages newest first by cursor, like the other list
filters, so it gets the same shape of index: ``(organization_id, to_number, created_at,
id)``, walked backwards from the cursor. Paging without a filter needs no new index: the
cursor continues along ``ix_callbacks_org_created`` (and the status and source-session
indexes for those filters).

Revision ID: 0007
Revises: 0004 (the lead re-chains it after the other helpers' 0005/0006 at merge)
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006_webhooks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_callbacks_org_number_created",
        "callbacks",
        ["organization_id", "to_number", "created_at", "id"],
    )


def downgrade() -> None:
    op.drop_index("ix_callbacks_org_number_created", table_name="callbacks")
