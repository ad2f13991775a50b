"""Scores: the office's inputs, appeals and their audit, closed periods, operators; an index
on cards covering the monthly card counts.

Revision ID: r0006
Revises: r0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from alembic import op

revision: str = "r0006"
down_revision: str | Sequence[str] | None = "r0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def instant(
    name: str, *, nullable: bool = False, comment: str | None = None
) -> sa.Column[datetime]:
    """An instant: timestamptz on PostgreSQL, UTC text on SQLite (see tables.UTCDateTime)."""
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable, comment=comment)


def points(name: str, comment: str | None = None) -> sa.Column[Decimal]:
    return sa.Column(name, sa.Numeric(precision=9, scale=2), nullable=False, comment=comment)


def upgrade() -> None:
    op.create_index(
        op.f("ix_cards_reached_at_department_level_voided_at"),
        "cards",
        ["reached_at", "department", "level", "voided_at"],
    )
    op.create_table(
        "score_satisfaction",
        sa.Column("department", sa.String(length=64), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False, comment="YYYY-MM"),
        sa.Column("platform", sa.String(length=32), nullable=False),
        sa.Column("satisfied", sa.Integer(), nullable=False),
        sa.Column("basically_satisfied", sa.Integer(), nullable=False),
        sa.Column("dissatisfied", sa.Integer(), nullable=False),
        instant("imported_at"),
        sa.PrimaryKeyConstraint(
            "department", "month", "platform", name=op.f("pk_score_satisfaction")
        ),
    )
    op.create_table(
        "score_evaluations",
        sa.Column("department", sa.String(length=64), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False, comment="YYYY or YYYY-MM"),
        sa.Column(
            "kind", sa.String(length=16), nullable=False, comment="superior or service_users"
        ),
        points("score", "out of 100"),
        instant("imported_at"),
        sa.PrimaryKeyConstraint("department", "period", "kind", name=op.f("pk_score_evaluations")),
    )
    op.create_table(
        "score_findings",
        sa.Column(
            "kind", sa.String(length=16), nullable=False, comment="inspection, fault, veto or bonus"
        ),
        sa.Column("record_id", sa.String(length=64), nullable=False),
        sa.Column("department", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False, comment="local date"),
        points("points", "0 for a veto"),
        sa.Column(
            "approval_ref", sa.String(length=128), nullable=True, comment="required for a bonus"
        ),
        sa.Column("description", sa.Text(), nullable=False),
        instant("imported_at"),
        sa.PrimaryKeyConstraint("kind", "record_id", name=op.f("pk_score_findings")),
    )
    op.create_index(op.f("ix_score_findings_day"), "score_findings", ["day"])
    op.create_table(
        "score_complaints",
        sa.Column("kind", sa.String(length=16), nullable=False, comment="staff or head"),
        sa.Column("record_id", sa.String(length=64), nullable=False),
        sa.Column("department", sa.String(length=64), nullable=False),
        sa.Column(
            "staff_id", sa.String(length=64), nullable=True, comment="null for a department head"
        ),
        sa.Column("day", sa.Date(), nullable=False, comment="local date"),
        sa.Column("description", sa.Text(), nullable=False),
        instant("imported_at"),
        sa.PrimaryKeyConstraint("kind", "record_id", name=op.f("pk_score_complaints")),
    )
    op.create_index(op.f("ix_score_complaints_day"), "score_complaints", ["day"])
    op.create_table(
        "score_appeals",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("department", sa.String(length=64), nullable=False),
        sa.Column("case_id", sa.String(length=128), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("filed_by", sa.String(length=128), nullable=False),
        instant("filed_at"),
        sa.Column(
            "status", sa.String(length=16), nullable=False, comment="pending, upheld or rejected"
        ),
        sa.Column("decided_by", sa.String(length=128), nullable=True),
        instant("decided_at", nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_score_appeals")),
    )
    op.create_index(
        op.f("ix_score_appeals_department_case_id"), "score_appeals", ["department", "case_id"]
    )
    op.create_table(
        "score_audit",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        instant("at"),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=256), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_score_audit")),
    )
    op.create_index(op.f("ix_score_audit_subject"), "score_audit", ["subject"])
    op.create_table(
        "score_periods",
        sa.Column("period", sa.String(length=7), nullable=False),
        instant("closed_at"),
        sa.Column("closed_by", sa.String(length=128), nullable=False),
        sa.Column(
            "results", sa.Text(), nullable=False, comment="the results as JSON, as they stand"
        ),
        sa.PrimaryKeyConstraint("period", name=op.f("pk_score_periods")),
    )
    op.create_table(
        "score_restatements",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        instant("at"),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column(
            "changes",
            sa.Text(),
            nullable=False,
            comment="JSON: per department, before and after",
        ),
        sa.Column("before", sa.Text(), nullable=False, comment="the results as JSON, before"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_score_restatements")),
    )
    op.create_index(op.f("ix_score_restatements_period"), "score_restatements", ["period"])
    op.create_table(
        "score_operators",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column(
            "role",
            sa.String(length=16),
            nullable=False,
            comment="office, supervisor or department",
        ),
        sa.Column(
            "department", sa.String(length=64), nullable=True, comment="for the department role"
        ),
        sa.Column("token_sha256", sa.String(length=64), nullable=False, comment="hex digest"),
        instant("created_at"),
        instant("revoked_at", nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_score_operators")),
        sa.UniqueConstraint("token_sha256", name=op.f("uq_score_operators_token_sha256")),
    )


def downgrade() -> None:
    for table in (
        "score_operators",
        "score_restatements",
        "score_periods",
        "score_audit",
        "score_appeals",
        "score_complaints",
        "score_findings",
        "score_evaluations",
        "score_satisfaction",
    ):
        op.drop_table(table)
    op.drop_index(op.f("ix_cards_reached_at_department_level_voided_at"), table_name="cards")
