"""Case state: one derived row per case, and every card a case reached.

Revision ID: r0003
Revises: r0002
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "r0003"
down_revision: str | Sequence[str] | None = "r0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# BIGINT on PostgreSQL; on SQLite only INTEGER PRIMARY KEY is the autoincrementing rowid.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def instant(
    name: str, *, nullable: bool = False, comment: str | None = None
) -> sa.Column[datetime]:
    """An instant: timestamptz on PostgreSQL, UTC text on SQLite (see tables.UTCDateTime)."""
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable, comment=comment)


def upgrade() -> None:
    op.create_table(
        "cases",
        sa.Column("department", sa.String(length=64), nullable=False),
        sa.Column("case_id", sa.String(length=128), nullable=False),
        sa.Column("item", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False, comment="open, closed or invalid"),
        sa.Column("level", sa.String(length=16), nullable=False),
        instant("accepted_at", nullable=True, comment="null while invalid"),
        instant("closed_at", nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("timeliness", sa.String(length=16), nullable=True),
        sa.Column("promised_due", sa.Date(), nullable=True, comment="local date"),
        sa.Column("legal_due", sa.Date(), nullable=True, comment="local date"),
        sa.Column("card", sa.String(length=16), nullable=True, comment="the highest card reached"),
        instant("next_change_at", nullable=True),
        sa.Column("anomalies", sa.Integer(), nullable=False),
        instant("updated_at"),
        sa.PrimaryKeyConstraint("department", "case_id", name=op.f("pk_cases")),
    )
    op.create_index(op.f("ix_cases_next_change_at"), "cases", ["next_change_at"], unique=False)
    op.create_table(
        "cards",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("department", sa.String(length=64), nullable=False),
        sa.Column("case_id", sa.String(length=128), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False, comment="warning, yellow or red"),
        instant("reached_at"),
        instant("voided_at", nullable=True),
        sa.Column("void_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cards")),
        sa.UniqueConstraint(
            "department", "case_id", "level", name=op.f("uq_cards_department_case_id_level")
        ),
    )
    op.create_index(op.f("ix_cards_reached_at"), "cards", ["reached_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_cards_reached_at"), table_name="cards")
    op.drop_table("cards")
    op.drop_index(op.f("ix_cases_next_change_at"), table_name="cases")
    op.drop_table("cases")
