"""Per agent and source: the highest seq seen and when the agent last delivered.

Revision ID: r0002
Revises: r0001
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "r0002"
down_revision: str | Sequence[str] | None = "r0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "streams",
        sa.Column("agent", sa.String(length=128), nullable=False),
        sa.Column(
            "source", sa.String(length=256), nullable=False, comment="'' when events name no source"
        ),
        sa.Column("last_seq", sa.BigInteger(), nullable=True),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("agent", "source", name=op.f("pk_streams")),
    )


def downgrade() -> None:
    op.drop_table("streams")
