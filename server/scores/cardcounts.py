"""The cards behind the e-supervision deductions, read from the `cards` table.

    card_counts(connection, zone, period) -> [CardCount]      one GROUP BY statement
    card_evidence(connection, zone, period) -> {department: [CardEvidence]}

A card counts in the local month that contains its `reached_at`; voided cards
(an upheld appeal, a superseded card) are left out. Cards of invalid cases
need no join with `cases`: the projector voids (SUPERSEDED) every card of a
case that turns invalid, so an unvoided card always belongs to a valid case.
The statement is one ``GROUP BY department, level`` per local month, joined by
UNION ALL: each reads the month's range of the covering index
``(reached_at, department, level, voided_at)`` (migration r0006) and nothing
else, so the database does all the counting, on SQLite and PostgreSQL alike,
in about the time of one plain GROUP BY over the year.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Connection, and_, func, literal, select, union_all

from server.scores.period import Period
from server.scores.results import CardCount, CardEvidence
from server.store import tables

__all__ = ["card_counts", "card_evidence", "month_bounds"]


def month_bounds(zone: ZoneInfo, period: Period) -> list[tuple[str, datetime, datetime]]:
    """(YYYY-MM, first instant, instant after) of each month of `period`, in UTC."""
    out = []
    for month in period.months():
        start = Period.parse(month)
        out.append(
            (
                month,
                datetime.combine(start.start, time(), tzinfo=zone).astimezone(UTC),
                datetime.combine(start.end, time(), tzinfo=zone).astimezone(UTC),
            )
        )
    return out


def _counted(period_start: datetime, period_end: datetime) -> ColumnElement[bool]:
    k = tables.cards.c
    return and_(k.voided_at.is_(None), k.reached_at >= period_start, k.reached_at < period_end)


def card_counts(connection: Connection, zone: ZoneInfo, period: Period) -> list[CardCount]:
    """Unvoided cards per department, month and level, from one statement (see above)."""
    k = tables.cards.c
    query = union_all(
        *(
            select(k.department, literal(name).label("month"), k.level, func.count().label("n"))
            .where(_counted(first, after))
            .group_by(k.department, k.level)
            for name, first, after in month_bounds(zone, period)
        )
    )
    found: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for department, name, level, n in connection.execute(query):
        found[department, name][level] = int(n)
    return [
        CardCount(d, m, levels.get("warning", 0), levels.get("yellow", 0), levels.get("red", 0))
        for (d, m), levels in sorted(found.items())
    ]


def card_evidence(
    connection: Connection, zone: ZoneInfo, period: Period, department: str | None = None
) -> dict[str, list[CardEvidence]]:
    """Every unvoided card of the period by department, in the order reached."""
    bounds = month_bounds(zone, period)
    k = tables.cards.c
    query = (
        select(k.department, k.case_id, k.level, k.reached_at)
        .where(_counted(bounds[0][1], bounds[-1][2]))
        .order_by(k.department, k.reached_at, k.case_id, k.level)
    )
    if department is not None:
        query = query.where(k.department == department)
    out: dict[str, list[CardEvidence]] = defaultdict(list)
    for code, case_id, level, reached_at in connection.execute(query).tuples():
        out[code].append(CardEvidence(code, case_id, level, reached_at))
    return dict(out)
