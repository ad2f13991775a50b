"""The evaluation office's inputs: one `Kind` per sort of record, its columns and natural key.

    KINDS[name] -> Kind          satisfaction, superior, service_users, inspections, faults,
                                 vetoes, bonuses, staff_complaints, head_complaints
    check_rows(kind, rows, known_departments, platforms) -> (good, [RowError])
    store_rows(connection, kind, good, now)               upsert on the natural key

Rows arrive as mappings of column name to text (a CSV or XLSX row, a JSON
object). Each row is checked on its own; a bad row is reported with its row
number, column and value, and the good rows beside it are stored. Storing is
an upsert on the kind's natural key, so importing the same file twice leaves
the same records (docs/scores.md lists every kind's columns).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite

from server.store.scoretables import (
    score_complaints,
    score_evaluations,
    score_findings,
    score_satisfaction,
)

__all__ = ["KINDS", "Kind", "RowError", "check_rows", "store_rows"]

_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
_PERIOD = re.compile(r"^\d{4}(-(0[1-9]|1[0-2]))?$")
_RECORD = re.compile(r"^\S{1,64}$")


@dataclass(frozen=True, slots=True)
class RowError:
    """One bad value: the row number (1 = first data row's line, as in the file), column, value."""

    row: int
    column: str
    value: Any
    problem: str

    def __str__(self) -> str:
        return f"row {self.row}, column {self.column!r}: {self.problem} (got {self.value!r})"

    def to_json(self) -> dict[str, Any]:
        return {
            "row": self.row,
            "column": self.column,
            "value": self.value,
            "problem": self.problem,
        }


@dataclass(frozen=True, slots=True)
class Kind:
    """A sort of input: its columns (required, then optional), table, fixed values, key."""

    name: str
    table: Table
    required: tuple[str, ...]
    optional: tuple[str, ...]
    key: tuple[str, ...]
    fixed: Mapping[str, Any]
    description: str

    @property
    def columns(self) -> tuple[str, ...]:
        return self.required + self.optional


def _finding(name: str, kind: str, points: bool, approval: bool, what: str) -> Kind:
    required = ("record_id", "department", "date") + (("points",) if points else ())
    required += ("approval_ref",) if approval else ()
    return Kind(
        name,
        score_findings,
        required,
        ("description",),
        ("kind", "record_id"),
        {"kind": kind},
        what,
    )


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind(
            "satisfaction",
            score_satisfaction,
            ("department", "month", "platform", "satisfied", "basically_satisfied", "dissatisfied"),
            (),
            ("department", "month", "platform"),
            {},
            "answers of one platform's users about a department in a month (满意度)",
        ),
        Kind(
            "superior",
            score_evaluations,
            ("department", "period", "score"),
            (),
            ("department", "period", "kind"),
            {"kind": "superior"},
            "the superior counterpart's score out of 100 (上级对口部门评价)",
        ),
        Kind(
            "service_users",
            score_evaluations,
            ("department", "period", "score"),
            (),
            ("department", "period", "kind"),
            {"kind": "service_users"},
            "the service users' score out of 100 (服务对象评价)",
        ),
        _finding("inspections", "inspection", True, False, "inspection findings (明察暗访)"),
        _finding("faults", "fault", True, False, "administrative faults (行政过错)"),
        _finding("vetoes", "veto", False, False, "one-vote veto findings (一票否决)"),
        _finding("bonuses", "bonus", True, True, "bonus points with their approval (加分)"),
        Kind(
            "staff_complaints",
            score_complaints,
            ("record_id", "staff_id", "department", "date"),
            ("description",),
            ("kind", "record_id"),
            {"kind": "staff"},
            "valid complaints against a member of staff (首问/首办责任)",
        ),
        Kind(
            "head_complaints",
            score_complaints,
            ("record_id", "department", "date"),
            ("description",),
            ("kind", "record_id"),
            {"kind": "head"},
            "valid complaints against a department's head",
        ),
    )
}


class _BadCellError(ValueError):
    pass


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, datetime):
        value = value.date()
    if isinstance(value, date):
        return value.isoformat()
    return str(value).strip()


def _count(text: str) -> int:
    if not text.isdigit():
        raise _BadCellError("must be a whole number, 0 or more")
    return int(text)


def _points(text: str, top: int = 1000) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise _BadCellError("must be a number of points such as 2 or 1.5") from None
    if not value.is_finite() or value < 0 or value > top:
        raise _BadCellError(f"must be between 0 and {top}")
    if value != value.quantize(Decimal("0.01")):
        raise _BadCellError("has more than two decimal places")
    return value


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise _BadCellError("must be a date written YYYY-MM-DD") from None


def _column(
    kind: Kind, column: str, text: str, departments: set[str], platforms: Sequence[str]
) -> tuple[str, Any]:
    """(table column, value) of one cell; raises _BadCellError."""
    if text == "" and column in kind.required:
        raise _BadCellError("is required")
    if column == "department":
        if text not in departments:
            raise _BadCellError("is not a department code of departments.yaml")
        return column, text
    if column == "platform":
        if text not in platforms:
            raise _BadCellError(f"is not a platform; platforms are {', '.join(platforms)}")
        return column, text
    if column == "month":
        if not _MONTH.match(text):
            raise _BadCellError("must be a month written YYYY-MM")
        return column, text
    if column == "period":
        if not _PERIOD.match(text):
            raise _BadCellError("must be a year YYYY or a month YYYY-MM")
        return column, text
    if column in ("satisfied", "basically_satisfied", "dissatisfied"):
        return column, _count(text)
    if column == "score":
        return column, _points(text, top=100)
    if column == "points":
        return column, _points(text)
    if column == "date":
        return "day", _day(text)
    if column in ("record_id", "staff_id"):
        if not _RECORD.match(text):
            raise _BadCellError("must be 1-64 characters without spaces")
        return column, text
    if column == "approval_ref":
        if len(text) > 128:
            raise _BadCellError("is longer than 128 characters")
        return column, text
    return column, text  # description


def check_rows(
    kind: Kind,
    rows: Iterable[tuple[int, Mapping[str, Any]]],
    departments: set[str],
    platforms: Sequence[str],
) -> tuple[list[dict[str, Any]], list[RowError]]:
    """(table rows of the good input rows, errors of the bad ones); rows are (number, cells)."""
    good: list[dict[str, Any]] = []
    errors: list[RowError] = []
    for number, cells in rows:
        record: dict[str, Any] = dict(kind.fixed)
        bad = False
        for column in kind.columns:
            raw = cells.get(column)
            try:
                name, value = _column(kind, column, _text(raw), departments, platforms)
            except _BadCellError as exc:
                errors.append(RowError(number, column, raw, str(exc)))
                bad = True
                continue
            record[name] = value
        if not bad:
            if kind.table is score_findings:
                record.setdefault("points", Decimal(0))
                record["approval_ref"] = record.get("approval_ref") or None
                record["description"] = record.get("description", "")
            elif kind.table is score_complaints:
                record.setdefault("staff_id", None)
                record["description"] = record.get("description", "")
            good.append(record)
    return good, errors


def store_rows(
    connection: Connection, kind: Kind, rows: Sequence[dict[str, Any]], now: datetime
) -> int:
    """Upsert `rows` on the kind's natural key; the last of several rows with one key wins."""
    if not rows:
        return 0
    unique = {tuple(r[k] for k in kind.key): {**r, "imported_at": now} for r in rows}
    dialect = connection.dialect.name
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(kind.table)
    columns = [c.name for c in kind.table.columns if c.name not in kind.key]
    statement = insert.on_conflict_do_update(
        index_elements=list(kind.key),
        set_={c: insert.excluded[c] for c in columns},
    )
    connection.execute(statement, list(unique.values()))
    return len(unique)
