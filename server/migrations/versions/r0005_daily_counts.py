"""Daily counts the figures add up, and an index on the cases' state.

The table starts empty; the server fills it from `cases` and `cards` on its
next start (server.dailycounts.ensure_daily_counts), because which local day
an instant falls on depends on the configured time zone, which a migration
does not know.

Revision ID: r0005
Revises: r0004
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "r0005"
down_revision: str | Sequence[str] | None = "r0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COUNTS = (
    "received",
    "left_open",
    "completed",
    "withdrawn",
    "early",
    "on_time",
    "late",
    "overdue_began",
    "overdue_ended",
    "warnings",
    "yellow_cards",
    "red_cards",
)


def upgrade() -> None:
    op.create_table(
        "daily_counts",
        sa.Column("department", sa.String(length=64), nullable=False),
        sa.Column("item", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False, comment="local date in the deployment's zone"),
        *(sa.Column(name, sa.Integer(), server_default="0", nullable=False) for name in COUNTS),
        sa.PrimaryKeyConstraint("department", "item", "day", name=op.f("pk_daily_counts")),
    )
    op.create_index(
        op.f("ix_cases_state_department_item"), "cases", ["state", "department", "item"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_cases_state_department_item"), table_name="cases")
    op.drop_table("daily_counts")
