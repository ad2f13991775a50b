"""`Bulk`: one Core statement run with many rows through the driver's executemany.

    Bulk(dialect, statement, columns)  compiled once for the dialect
    Bulk.execute(connection, rows)     rows are dicts keyed by bind name

SQLAlchemy's own executemany re-builds every row's parameters through its
statement machinery (tens of microseconds a row); the projector writes
thousands of rows a batch, and that was a third of its time. `Bulk` compiles
the statement once and converts each value with its column type's own bind
processor -- the same text SQLAlchemy would send (`UTCDateTime` as UTC, SQLite's
date and time formats) -- and hands the rows to the driver. Statements only, no
RETURNING: what comes back is the driver's affair.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

__all__ = ["Bulk"]


class Bulk:
    """`statement` compiled for `dialect` (an engine's); `columns` names an INSERT's
    columns (the values it sets); an UPDATE's bind names come from the statement."""

    def __init__(
        self, dialect: Dialect, statement: ClauseElement, columns: Sequence[str] | None = None
    ) -> None:
        compiled = statement.compile(
            dialect=dialect, column_keys=list(columns or ()) or None, for_executemany=True
        )
        assert isinstance(compiled, SQLCompiler)
        self.sql = compiled.string
        order = compiled.positiontup
        self.positional = order is not None
        names = list(order) if order is not None else list(compiled.binds)
        self.binds: list[tuple[str, Callable[[Any], Any] | None]] = [
            (name, compiled.binds[name].type._cached_bind_processor(dialect)) for name in names
        ]

    def parameters(self, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
        """The rows as the driver takes them: tuples in bind order, or dicts by name."""
        names = [name for name, _ in self.binds]
        convert = [(i, p) for i, (_, p) in enumerate(self.binds) if p is not None]
        # itemgetter picks a row's values in C; only the few typed columns go through Python.
        pick = itemgetter(*names)
        out: list[Any] = []
        for row in rows:
            values = pick(row)
            values = list(values) if len(names) > 1 else [values]
            for i, process in convert:
                values[i] = process(values[i])
            out.append(tuple(values) if self.positional else dict(zip(names, values, strict=True)))
        return out

    def execute(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run the statement once per row, in the caller's transaction."""
        if rows:
            connection.exec_driver_sql(self.sql, self.parameters(rows))
