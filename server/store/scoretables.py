"""The tables of scores (server/scores), on the same `metadata` as server/store/tables.py.

    score_satisfaction   per department, month and platform: how many users answered
                         满意, 基本满意 and 不满意
    score_evaluations    per department and period ("2025" or "2025-03"): the superior
                         counterpart's and the service users' score out of 100
    score_findings       the office's records by (kind, record_id): inspection findings
                         (明察暗访), administrative faults (行政过错), one-vote vetoes
                         (一票否决) and bonuses (with the approval reference)
    score_complaints     valid complaints by (kind, record_id): against a member of staff
                         (staff id) or against a department's head
    score_appeals        a department's appeal against one of its cards, and its decision
    score_audit          every step of an appeal, every period closed and restated:
                         who, when, what and why; append-only
    score_periods        a closed period and its results as frozen then (JSON)
    score_restatements   a closed period's results changing after it closed: before and after
    score_operators      the bearer tokens of the evaluation office, supervisors and
                         departments (the SHA-256 of the token, never the token)

and one index on `cards` (tables.py): (reached_at, department, level, voided_at),
which covers the month-by-month count of the e-supervision deductions.

Points are NUMERIC(9, 2). The migration server/migrations/versions/r0006_scores.py
is written from these definitions.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    Index,
    Integer,
    Numeric,
    String,
    Table,
    Text,
)

from server.store.tables import UTCDateTime, cards, metadata

__all__ = [
    "cards_for_scores",
    "score_appeals",
    "score_audit",
    "score_complaints",
    "score_evaluations",
    "score_findings",
    "score_operators",
    "score_periods",
    "score_restatements",
    "score_satisfaction",
]

#: Covers server/scores/cardcounts.py: a month's cards are one range of this index.
cards_for_scores = Index(
    None, cards.c.reached_at, cards.c.department, cards.c.level, cards.c.voided_at
)

_Id = BigInteger().with_variant(Integer(), "sqlite")
_Points = Numeric(9, 2, asdecimal=True)

score_satisfaction = Table(
    "score_satisfaction",
    metadata,
    Column("department", String(64), primary_key=True),
    Column("month", String(7), primary_key=True, comment="YYYY-MM"),
    Column("platform", String(32), primary_key=True),
    Column("satisfied", Integer(), nullable=False),
    Column("basically_satisfied", Integer(), nullable=False),
    Column("dissatisfied", Integer(), nullable=False),
    Column("imported_at", UTCDateTime(), nullable=False),
)

score_evaluations = Table(
    "score_evaluations",
    metadata,
    Column("department", String(64), primary_key=True),
    Column("period", String(7), primary_key=True, comment="YYYY or YYYY-MM"),
    Column("kind", String(16), primary_key=True, comment="superior or service_users"),
    Column("score", _Points, nullable=False, comment="out of 100"),
    Column("imported_at", UTCDateTime(), nullable=False),
)

score_findings = Table(
    "score_findings",
    metadata,
    Column("kind", String(16), primary_key=True, comment="inspection, fault, veto or bonus"),
    Column("record_id", String(64), primary_key=True),
    Column("department", String(64), nullable=False),
    Column("day", Date(), nullable=False, comment="local date"),
    Column("points", _Points, nullable=False, comment="0 for a veto"),
    Column("approval_ref", String(128), nullable=True, comment="required for a bonus"),
    Column("description", Text(), nullable=False),
    Column("imported_at", UTCDateTime(), nullable=False),
    Index(None, "day"),
)

score_complaints = Table(
    "score_complaints",
    metadata,
    Column("kind", String(16), primary_key=True, comment="staff or head"),
    Column("record_id", String(64), primary_key=True),
    Column("department", String(64), nullable=False),
    Column("staff_id", String(64), nullable=True, comment="null for a department head"),
    Column("day", Date(), nullable=False, comment="local date"),
    Column("description", Text(), nullable=False),
    Column("imported_at", UTCDateTime(), nullable=False),
    Index(None, "day"),
)

score_appeals = Table(
    "score_appeals",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("department", String(64), nullable=False),
    Column("case_id", String(128), nullable=False),
    Column("level", String(16), nullable=False),
    Column("reason", Text(), nullable=False),
    Column("filed_by", String(128), nullable=False),
    Column("filed_at", UTCDateTime(), nullable=False),
    Column("status", String(16), nullable=False, comment="pending, upheld or rejected"),
    Column("decided_by", String(128), nullable=True),
    Column("decided_at", UTCDateTime(), nullable=True),
    Column("decision_reason", Text(), nullable=True),
    Index(None, "department", "case_id"),
)

score_audit = Table(
    "score_audit",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(32), nullable=False),
    Column("subject", String(256), nullable=False),
    Column("detail", Text(), nullable=False),
    Index(None, "subject"),
)

score_periods = Table(
    "score_periods",
    metadata,
    Column("period", String(7), primary_key=True),
    Column("closed_at", UTCDateTime(), nullable=False),
    Column("closed_by", String(128), nullable=False),
    Column("results", Text(), nullable=False, comment="the results as JSON, as they stand"),
)

score_restatements = Table(
    "score_restatements",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("period", String(7), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("reason", Text(), nullable=False),
    Column("changes", Text(), nullable=False, comment="JSON: per department, before and after"),
    Column("before", Text(), nullable=False, comment="the results as JSON, before"),
    Index(None, "period"),
)

score_operators = Table(
    "score_operators",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("role", String(16), nullable=False, comment="office, supervisor or department"),
    Column("department", String(64), nullable=True, comment="for the department role"),
    Column("token_sha256", String(64), nullable=False, unique=True, comment="hex digest"),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("revoked_at", UTCDateTime(), nullable=True),
)
