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

Everything is read from the `daily_counts` table the `CaseProjector` keeps in
step with `cases` and `cards` (server.dailycounts: per department, item and
local day), so a year is a sum over at most days x items rows, whatever the
number of cases: one query of conditional sums, grouped by department when
asked, and one count of the invalid cases. The statements are plain Core and
give the same numbers on SQLite and PostgreSQL.

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
    Table,
    and_,
    func,
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

    def where(self, table: Table) -> ColumnElement[bool]:
        """The condition on `table` (`cases` or `daily_counts`) that selects the scope."""
        c = table.c
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


#: Counts that flow: summed over the days of the period, under the same name.
FLOWS: Final = (
    "received",
    "completed",
    "withdrawn",
    "early",
    "on_time",
    "late",
    "warnings",
    "yellow_cards",
    "red_cards",
)


def _grouped(sums: dict[str, ColumnElement[Any]], scope: Scope, by_department: bool) -> Select[Any]:
    d = tables.daily_counts.c
    labelled = [func.coalesce(func.sum(value), 0).label(name) for name, value in sums.items()]
    if not by_department:
        return select(*labelled).where(scope.where(tables.daily_counts))
    return (
        select(d.department.label("department_"), *labelled)
        .where(scope.where(tables.daily_counts))
        .group_by(d.department)
    )


def _within_query(scope: Scope, start: date, end: date, by_department: bool) -> Select[Any]:
    """Sums over the days of [start, end): the flows, and what opened and closed."""
    d = tables.daily_counts.c
    sums: dict[str, ColumnElement[Any]] = {name: d[name] for name in FLOWS}
    sums["open_change"] = d.received - d.left_open
    sums["overdue_change"] = d.overdue_began - d.overdue_ended
    return _grouped(sums, scope, by_department).where(d.day >= start, d.day < end)


def _before_query(scope: Scope, start: date, by_department: bool) -> Select[Any]:
    """Cases open, and overdue, at the start: what began minus what ended before it."""
    d = tables.daily_counts.c
    sums: dict[str, ColumnElement[Any]] = {
        "carried_over": d.received - d.left_open,
        "overdue_at_start": d.overdue_began - d.overdue_ended,
    }
    return _grouped(sums, scope, by_department).where(d.day < start)


def _stocks(counts: dict[str, int]) -> None:
    """Cases open and overdue at the end: at the start, plus what changed within."""
    counts["open_at_end"] = counts.get("carried_over", 0) + counts.pop("open_change", 0)
    counts["overdue_at_end"] = counts.pop("overdue_at_start", 0) + counts.pop("overdue_change", 0)


def _invalid_query(scope: Scope, by_department: bool) -> Select[Any]:
    """The invalid cases of the scope, whatever the period (through the index on state)."""
    c = tables.cases.c
    count = func.count().label("invalid")
    query = select(count)
    if by_department:
        query = select(c.department.label("department_"), count).group_by(c.department)
    return query.where(scope.where(tables.cases), c.state == "invalid")


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
    period_instants(deployment, start, end)  # checks the period
    found: dict[str, dict[str, int]] = {}
    with engine.connect() as connection:
        for query in (
            _within_query(resolved, start, end, by_department),
            _before_query(resolved, start, by_department),
            _invalid_query(resolved, by_department),
        ):
            for row in connection.execute(query).mappings():
                key = str(row["department_"]) if by_department else ""
                counts = found.setdefault(key, {})
                counts.update(
                    (name, int(value or 0)) for name, value in row.items() if name != "department_"
                )
    for counts in found.values():
        _stocks(counts)
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
