"""The figures of docs/design.md ("Figures") for a period and a scope, computed in SQL.

    figures(engine, deployment, start, end, scope, code=None) -> Figures
    figures_by_department(engine, deployment, start, end, scope, code=None)
        -> dict[str, Figures]
    resolve_scope(deployment, scope, code) -> Scope

A period is [start, end) in local dates of the deployment's time zone: it
runs from local midnight of `start` (inclusive) to local midnight of `end`
(exclusive), so an instant counts in the period that contains it once
converted to local time (2007-12-31T16:30:00Z is 2008-01-01 00:30 in
Shanghai, and belongs to 2008).

Everything is read from the `cases` and `cards` tables the `CaseProjector`
keeps: one query over `cases` and one over `cards` joined to `cases`, each a
handful of conditional aggregates, grouped by department when asked. The
statements are plain Core and give the same numbers on SQLite and PostgreSQL.

Cases in state ``invalid`` have no acceptance instant, so no period can hold
them: they are left out of every figure and counted apart in `invalid`, for
the whole scope regardless of the period.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any, Final, Literal, get_args

from sqlalchemy import (
    ColumnElement,
    Engine,
    and_,
    case,
    exists,
    func,
    or_,
    select,
    true,
)
from sqlalchemy.sql import Select

from casework.config import CATEGORIES, Deployment, Item
from casework.errors import EsupError
from server.store import tables

__all__ = [
    "SCOPES",
    "Figures",
    "PeriodError",
    "Rate",
    "Scope",
    "ScopeError",
    "ScopeName",
    "figures",
    "figures_by_department",
    "period_instants",
    "resolve_scope",
]

ScopeName = Literal["all", "category", "department", "item"]
SCOPES: Final[tuple[str, ...]] = get_args(ScopeName)

#: Fields of `Figures` that are counts, in the order of docs/design.md.
COUNTS: Final[tuple[str, ...]] = (
    "received",
    "carried_over",
    "completed",
    "withdrawn",
    "early",
    "on_time",
    "late",
    "open_at_end",
    "overdue_at_end",
    "warnings",
    "yellow_cards",
    "red_cards",
    "invalid",
)


class ScopeError(EsupError, ValueError):
    """A scope that is not one of `SCOPES`, or a code that does not fit the scope."""


class PeriodError(EsupError, ValueError):
    """A period whose end is not after its start."""


@dataclass(frozen=True, slots=True)
class Rate:
    """A ratio kept as its two parts; `value` is None when the denominator is 0."""

    numerator: int
    denominator: int

    @property
    def value(self) -> float | None:
        return None if self.denominator == 0 else self.numerator / self.denominator

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "numerator": self.numerator, "denominator": self.denominator}


@dataclass(frozen=True, slots=True)
class Figures:
    """The counts of one scope over the period [start, end) (local dates), and its rates.

    received        cases accepted in the period
    carried_over    cases accepted before start and not closed before start
    completed       cases completed or withdrawn in the period
    withdrawn       of those, withdrawn
    early, on_time, late
                    cases completed (not withdrawn) in the period, by timeliness;
                    ``immediate`` (a same-day item finished on its due day) counts as on_time
    open_at_end     cases accepted before end and not closed before end
    overdue_at_end  of those, the ones with an unvoided yellow or red card reached before end
    warnings, yellow_cards, red_cards
                    unvoided cards reached in the period
    invalid         cases in the scope the server could not evaluate (any period)
    """

    start: date
    end: date
    scope: str
    code: str | None
    received: int = 0
    carried_over: int = 0
    completed: int = 0
    withdrawn: int = 0
    early: int = 0
    on_time: int = 0
    late: int = 0
    open_at_end: int = 0
    overdue_at_end: int = 0
    warnings: int = 0
    yellow_cards: int = 0
    red_cards: int = 0
    invalid: int = 0

    @property
    def completion_rate(self) -> Rate:
        """completed / (received + carried_over)."""
        return Rate(self.completed, self.received + self.carried_over)

    @property
    def on_time_rate(self) -> Rate:
        """(early + on_time) / (completed − withdrawn)."""
        return Rate(self.early + self.on_time, self.completed - self.withdrawn)

    def counts(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in COUNTS}

    def to_json(self) -> dict[str, Any]:
        """The figures as the API answers them: period, scope, counts and rates."""
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "scope": self.scope,
            "code": self.code,
            **self.counts(),
            "completion_rate": self.completion_rate.to_json(),
            "on_time_rate": self.on_time_rate.to_json(),
        }


@dataclass(frozen=True, slots=True)
class Scope:
    """A resolved scope: which departments (None: any) and which item codes (None: any)."""

    name: str
    code: str | None
    departments: tuple[str, ...] | None = None
    items: tuple[str, ...] | None = None

    def where(self) -> ColumnElement[bool]:
        """The condition on `cases` that selects the scope."""
        c = tables.cases.c
        condition: ColumnElement[bool] = true()
        if self.departments is not None:
            condition = and_(condition, c.department.in_(self.departments))
        if self.items is not None:
            condition = and_(condition, c.item.in_(self.items))
        return condition


def resolve_scope(deployment: Deployment, scope: str, code: str | None = None) -> Scope:
    """The scope `scope` (one of `SCOPES`) with `code`, checked against the configuration.

    ``all`` takes no code; ``category`` a category (government, party_mass,
    stationed); ``department`` a department code; ``item`` an item code (its
    sub-items are counted with it) or a sub-item code. Raises `ScopeError`.
    """
    if scope not in SCOPES:
        raise ScopeError(f"The scope {scope!r} is not known. Valid choices: {', '.join(SCOPES)}.")
    if scope == "all":
        if code:
            raise ScopeError(f"The scope 'all' takes no code (got {code!r}); leave code out.")
        return Scope("all", None)
    if not code:
        raise ScopeError(f"The scope {scope!r} needs a code naming the {scope}.")
    if scope == "category":
        if code not in CATEGORIES:
            raise ScopeError(
                f"The category {code!r} is not known. Valid choices: {', '.join(CATEGORIES)}."
            )
        members = tuple(d.code for d in deployment.departments if d.category == code)
        return Scope("category", code, departments=members)
    if scope == "department":
        if code not in {d.code for d in deployment.departments}:
            raise ScopeError(
                f"No department has the code {code!r}; departments are configured in "
                "departments.yaml."
            )
        return Scope("department", code, departments=(code,))
    try:
        entry = deployment.item(code)
    except LookupError:
        raise ScopeError(
            f"No item or sub-item has the code {code!r}; items are configured in catalog.yaml."
        ) from None
    codes = (code, *(s.code for s in entry.sub_items)) if isinstance(entry, Item) else (code,)
    return Scope("item", code, items=codes)


def period_instants(deployment: Deployment, start: date, end: date) -> tuple[datetime, datetime]:
    """The UTC instants of local midnight of `start` and of `end` in the deployment's zone.

    Raises `PeriodError` unless `end` is after `start`.
    """
    if end <= start:
        raise PeriodError(
            f"The period ends on {end.isoformat()}, not after its start {start.isoformat()}; "
            "the end date is exclusive, so a single day D is start=D, end=D+1."
        )
    zone = deployment.settings.zone
    return (
        datetime.combine(start, time(), tzinfo=zone).astimezone(UTC),
        datetime.combine(end, time(), tzinfo=zone).astimezone(UTC),
    )


def _count(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _case_query(scope: Scope, s: datetime, e: datetime, by_department: bool) -> Select[Any]:
    """The counts read from `cases`, one row (or one per department)."""
    c = tables.cases.c
    k = tables.cards.c
    valid = c.state != "invalid"
    closed_in = and_(c.closed_at >= s, c.closed_at < e)
    completed = and_(valid, closed_in, c.outcome == "completed")
    open_at_end = and_(valid, c.accepted_at < e, or_(c.closed_at.is_(None), c.closed_at >= e))
    carded = exists().where(
        k.department == c.department,
        k.case_id == c.case_id,
        k.level.in_(("yellow", "red")),
        k.voided_at.is_(None),
        k.reached_at < e,
    )
    counts = {
        "received": _count(and_(valid, c.accepted_at >= s, c.accepted_at < e)),
        "carried_over": _count(
            and_(valid, c.accepted_at < s, or_(c.closed_at.is_(None), c.closed_at >= s))
        ),
        "completed": _count(and_(valid, closed_in, c.outcome.in_(("completed", "withdrawn")))),
        "withdrawn": _count(and_(valid, closed_in, c.outcome == "withdrawn")),
        "early": _count(and_(completed, c.timeliness == "early")),
        "on_time": _count(and_(completed, c.timeliness.in_(("on_time", "immediate")))),
        "late": _count(and_(completed, c.timeliness == "late")),
        "open_at_end": _count(open_at_end),
        "overdue_at_end": _count(and_(open_at_end, carded)),
        "invalid": _count(c.state == "invalid"),
    }
    # Only rows that can count: cases open at some instant before end and not closed
    # before start, and invalid ones. Lets an index on accepted_at or closed_at help.
    relevant = or_(
        c.state == "invalid",
        and_(c.accepted_at < e, or_(c.closed_at.is_(None), c.closed_at >= s)),
    )
    return _grouped(counts, by_department).where(scope.where(), relevant)


def _card_query(scope: Scope, s: datetime, e: datetime, by_department: bool) -> Select[Any]:
    """The card counts: unvoided cards reached in [s, e) of valid cases in the scope."""
    c = tables.cases.c
    k = tables.cards.c
    counts = {
        "warnings": _count(k.level == "warning"),
        "yellow_cards": _count(k.level == "yellow"),
        "red_cards": _count(k.level == "red"),
    }
    joined = tables.cards.join(
        tables.cases, and_(c.department == k.department, c.case_id == k.case_id)
    )
    return (
        _grouped(counts, by_department)
        .select_from(joined)
        .where(
            scope.where(),
            c.state != "invalid",
            k.voided_at.is_(None),
            k.reached_at >= s,
            k.reached_at < e,
        )
    )


def _grouped(counts: dict[str, ColumnElement[Any]], by_department: bool) -> Select[Any]:
    labelled = [value.label(name) for name, value in counts.items()]
    if not by_department:
        return select(*labelled)
    department = tables.cases.c.department
    return select(department.label("department_"), *labelled).group_by(department)


def _run(
    engine: Engine,
    deployment: Deployment,
    start: date,
    end: date,
    scope: str,
    code: str | None,
    by_department: bool,
) -> tuple[Scope, dict[str, dict[str, int]]]:
    """The resolved scope and its counts keyed by department ('' when not grouped)."""
    resolved = resolve_scope(deployment, scope, code)
    s, e = period_instants(deployment, start, end)
    found: dict[str, dict[str, int]] = {}
    with engine.connect() as connection:
        for query in (
            _case_query(resolved, s, e, by_department),
            _card_query(resolved, s, e, by_department),
        ):
            for row in connection.execute(query).mappings():
                key = str(row["department_"]) if by_department else ""
                counts = found.setdefault(key, {})
                counts.update(
                    (name, int(value or 0)) for name, value in row.items() if name != "department_"
                )
    return resolved, found


def figures(
    engine: Engine,
    deployment: Deployment,
    start: date,
    end: date,
    scope: str = "all",
    code: str | None = None,
) -> Figures:
    """The figures of one scope for the period [start, end), local dates, end exclusive.

    `scope` is one of `SCOPES` and `code` names the category, department or
    item (an item counts its sub-items too); see `resolve_scope`. Raises
    `ScopeError` for an unknown scope or code and `PeriodError` unless end > start.
    """
    resolved, found = _run(engine, deployment, start, end, scope, code, False)
    return Figures(start, end, resolved.name, resolved.code, **found.get("", {}))


def figures_by_department(
    engine: Engine,
    deployment: Deployment,
    start: date,
    end: date,
    scope: str = "all",
    code: str | None = None,
) -> dict[str, Figures]:
    """`figures` split by department: department code -> that department's part of the scope.

    Every configured department the scope covers is present (zeros where
    nothing happened), and so is any other department found in the data
    (cases stored for a department since removed from the configuration).
    Ordered by department code. Raises as `figures` does.
    """
    resolved, found = _run(engine, deployment, start, end, scope, code, True)
    if resolved.departments is not None:
        expected: Sequence[str] = resolved.departments
    elif resolved.items is None:
        expected = [d.code for d in deployment.departments]
    else:
        expected = []
    names = sorted({*expected, *found})
    return {
        name: Figures(start, end, resolved.name, resolved.code, **found.get(name, {}))
        for name in names
    }
