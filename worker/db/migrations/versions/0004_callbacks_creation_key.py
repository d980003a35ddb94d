"""callbacks: an idempotency key for creating callbacks

``callbacks schedule --idempotency-key`` (and the ``idempotency_key`` field of a JSON-lines
line or of the ``callbacks.schedule`` task): the same key and callback again returns the
first one; the unique index makes that hold under concurrent creates too. The fingerprint
(SHA-256 of the normalized callback) tells "the same callback" from "a different one".

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HAS_KEY = sa.text("creation_key IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("callbacks") as batch:
        batch.add_column(sa.Column("creation_key", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("creation_fingerprint", sa.String(length=64), nullable=True))
    op.create_index(
        "ux_callbacks_org_creation_key",
        "callbacks",
        ["organization_id", "creation_key"],
        unique=True,
        postgresql_where=HAS_KEY,
        sqlite_where=HAS_KEY,
    )


def downgrade() -> None:
    op.drop_index("ux_callbacks_org_creation_key", table_name="callbacks")
    with op.batch_alter_table("callbacks") as batch:
        batch.drop_column("creation_fingerprint")
        batch.drop_column("creation_key")
