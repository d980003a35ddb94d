"""callbacks: vacuum early and often (PostgreSQL)

Every callback is updated 3-4 times within seconds of coming due, so the due index fills
with dead entries that an empty poll must step over until vacuum removes them (measured:
1.5 ms -> 5.6 ms right after a 100,000 drain, tests/perf). The default trigger (20 % of
the table dead) waits far too long on a big table; these settings vacuum after ~1 % or
1,000 rows and without cost-based sleeping. A long-open snapshot elsewhere in the database
still keeps the dead entries alive (101 ms measured): keep transactions short.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SETTINGS = (
    "autovacuum_vacuum_scale_factor = 0.01, "
    "autovacuum_vacuum_threshold = 1000, "
    "autovacuum_vacuum_cost_delay = 0, "
    "autovacuum_analyze_scale_factor = 0.02"
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE callbacks SET ({SETTINGS})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE callbacks RESET (autovacuum_vacuum_scale_factor, "
            "autovacuum_vacuum_threshold, autovacuum_vacuum_cost_delay, "
            "autovacuum_analyze_scale_factor)"
        )
