"""Projection queue: the cases whose events were stored and whose state is not yet re-derived.

Revision ID: r0007
Revises: r0006
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "r0007"
down_revision: str | Sequence[str] | None = "r0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "projection_queue",
        sa.Column("department", sa.String(length=64), nullable=False),
        sa.Column("case_id", sa.String(length=128), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        # An instant: timestamptz on PostgreSQL, UTC text on SQLite (see tables.UTCDateTime).
        sa.Column("marked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("department", "case_id", name=op.f("pk_projection_queue")),
    )
    op.create_index(
        op.f("ix_projection_queue_marked_at"), "projection_queue", ["marked_at"], unique=False
    )
    # Cases stored before the queue existed were projected in the request that stored them.


def downgrade() -> None:
    op.drop_index(op.f("ix_projection_queue_marked_at"), table_name="projection_queue")
    op.drop_table("projection_queue")
