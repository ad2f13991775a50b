"""The first tables: raw events, quarantine, agent tokens and sequence gaps.

Revision ID: r0001
Revises:
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "r0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# BIGINT on PostgreSQL; on SQLite only INTEGER PRIMARY KEY is the autoincrementing rowid.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def instant(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    """An instant: timestamptz on PostgreSQL, UTC text on SQLite (see tables.UTCDateTime)."""
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("department", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("case_id", sa.String(length=128), nullable=False),
        sa.Column("item", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        instant("at"),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("source_agent", sa.String(length=128), nullable=False),
        instant("received_at"),
        sa.Column("body", sa.Text(), nullable=False, comment="the event as wire-format v1 JSON"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.UniqueConstraint("department", "event_id", name=op.f("uq_events_department_event_id")),
    )
    op.create_index(
        op.f("ix_events_department_case_id"), "events", ["department", "case_id"], unique=False
    )
    op.create_table(
        "quarantine",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        instant("received_at"),
        sa.Column("agent", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False, comment="the rejected event as received"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quarantine")),
    )
    op.create_table(
        "seq_gaps",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("agent", sa.String(length=128), nullable=False),
        sa.Column("source", sa.String(length=256), nullable=False),
        sa.Column("expected_seq", sa.BigInteger(), nullable=False),
        sa.Column("got_seq", sa.BigInteger(), nullable=False),
        instant("detected_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_seq_gaps")),
    )
    op.create_table(
        "tokens",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("agent", sa.String(length=128), nullable=False),
        sa.Column(
            "departments", sa.Text(), nullable=False, comment="department codes, comma-separated"
        ),
        sa.Column("token_sha256", sa.String(length=64), nullable=False, comment="hex digest"),
        instant("created_at"),
        instant("revoked_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tokens")),
        sa.UniqueConstraint("agent", name=op.f("uq_tokens_agent")),
        sa.UniqueConstraint("token_sha256", name=op.f("uq_tokens_token_sha256")),
    )


def downgrade() -> None:
    op.drop_table("tokens")
    op.drop_table("seq_gaps")
    op.drop_table("quarantine")
    op.drop_index(op.f("ix_events_department_case_id"), table_name="events")
    op.drop_table("events")
