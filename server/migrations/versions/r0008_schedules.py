"""Schedules: each open case's next levels and cards as time passes (server.schedules).

Revision ID: r0008
Revises: r0007
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "r0008"
down_revision: str | Sequence[str] | None = "r0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Null for every case stored before: the level-advancing job derives such a case from
    # its events, as it always did, and stores its schedule then.
    with op.batch_alter_table("cases") as batch:
        batch.add_column(
            sa.Column(
                "schedule",
                sa.Text(),
                nullable=True,
                comment="the open case's next changes as time passes (server.schedules), JSON",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("schedule")
