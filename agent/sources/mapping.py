"""Rows to events: a column mapping for CSV files and exchange-database rows.

    event_from_row(row, columns, constants, zone, source=..., line=...) -> CaseEvent

`columns` maps an event field to the row's column; `constants` gives a field
the same value on every row. Empty cells and NULLs are absent fields. Whole
numbers written as text ("5") become integers for the integer fields; a
date-time without an offset (a naive database timestamp, a CSV cell) is read
in `zone`. Everything else is the wire format's business: the error names
the field and the value, as for a JSON line.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

from casework.errors import EventError
from casework.events import CaseEvent
from casework.wire import parse_event

__all__ = ["INT_FIELDS", "event_from_row"]

#: The wire fields that hold whole numbers.
INT_FIELDS: Final[frozenset[str]] = frozenset({"promised_days", "legal_days", "days", "step_days"})


def _value(field: str, value: object, zone: ZoneInfo, source: str, line: int | None) -> object:
    if field in INT_FIELDS and isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            raise EventError(
                "must be a whole number", field=field, value=value, source=source, line=line
            ) from None
    if field == "at":
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value.strip())
            except ValueError:
                return value  # the wire format says what is wrong with it
            value = parsed if parsed.tzinfo is None else value
        if isinstance(value, datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=zone)
            return value.isoformat()
        if isinstance(value, date):
            return value.isoformat()
    if field not in INT_FIELDS and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)  # numeric ids in a database column are text on the wire
    return value


def event_from_row(
    row: Mapping[str, object],
    columns: Mapping[Any, str],
    constants: Mapping[Any, str],
    zone: ZoneInfo,
    *,
    source: str = "",
    line: int | None = None,
) -> CaseEvent:
    """The event of one row; `EventError` naming the field and value when it breaks a rule."""
    obj: dict[str, object] = dict(constants)
    for field, column in columns.items():
        if column not in row:
            raise EventError(
                f"the column {column!r} mapped to this field is not in the row",
                field=field,
                source=source,
                line=line,
                choices=list(row),
            )
        value = row[column]
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        obj[field] = _value(field, value, zone, source, line)
    return parse_event(obj, source=source, line=line)
