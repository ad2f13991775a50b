"""`Bulk`: one Core statement run with many rows through the driver's executemany.

    Bulk(dialect, statement, columns)  compiled once for the dialect
    Bulk.execute(connection, rows)     rows are dicts keyed by bind name
    BulkUpdate(dialect, table, keys, columns)
                                       the named columns of rows found by their keys
    execute_values(connection, head, width, values, tail)
                                       SQLite: rows as multi-row ``VALUES`` statements

SQLAlchemy's own executemany re-builds every row's parameters through its
statement machinery (tens of microseconds a row); the projector writes
thousands of rows a batch, and that was a third of its time. `Bulk` compiles
the statement once and converts each value with its column type's own bind
processor -- the same text SQLAlchemy would send (`UTCDateTime` as UTC, SQLite's
date and time formats) -- and hands the rows to the driver. Statements only, no
RETURNING: what comes back is the driver's affair.

On PostgreSQL an INSERT (with its ON CONFLICT clause) runs once for the whole
batch instead: ``INSERT ... SELECT ... FROM json_to_recordset(rows)``, the rows
sent as one JSON document, encoded in C here and read in C there, where
``executemany`` costs a statement on the server for every row. On SQLite an
INSERT whose only binds are a row's values, and `BulkUpdate`, run as multi-row
``VALUES`` statements (`execute_values`): the driver's ``executemany`` gives
Python's GIL up around every row, and beside a busy thread of the same process
(the server's requests, beside its advancing job) getting it back costs up to
5 ms a row, while the write lock is held. One statement cannot upsert the same
key twice, which none of the callers asks.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from functools import lru_cache
from operator import itemgetter
from typing import Any, Final

from sqlalchemy import Connection, Dialect, Insert, Table, bindparam
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

__all__ = ["Bulk", "BulkUpdate", "execute_values"]

#: No value: what a typed column's memo in `Bulk.parameters` starts from.
_UNSEEN: Final = object()


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
        self.recordset: str | None = None
        if dialect.name == "postgresql" and isinstance(statement, Insert) and columns:
            self.recordset = _from_recordset(dialect, statement, columns, self.sql)
        # SQLite: an INSERT whose only binds are its row's values goes as multi-row VALUES.
        self.values: tuple[str, str] | None = None
        head, found, rest = self.sql.partition(" VALUES (")
        group, _, tail = rest.partition(")")
        if (
            dialect.name == "sqlite"
            and isinstance(statement, Insert)
            and self.positional
            and found
            and group == ", ".join("?" * len(names))
            and "?" not in head + tail
        ):
            self.values = (head, tail.strip())

    def parameters(
        self, rows: Sequence[Mapping[str, Any]], keys: Sequence[str] | None = None
    ) -> list[Any]:
        """The rows as the driver takes them: tuples in bind order, or dicts by name.

        `keys`, when given, are what the rows hold the binds' values under, in the binds'
        order (else their names)."""
        names = [name for name, _ in self.binds]
        # itemgetter picks a row's values in C; only the few typed columns go through Python.
        pick = itemgetter(*(keys or names))
        # Each typed column's last value and what it became: a value the rows share (one
        # instant stamped on every row, a run of None) is converted once.
        slots: list[list[Any]] = [
            [i, p, _UNSEEN, None] for i, (_, p) in enumerate(self.binds) if p is not None
        ]
        out: list[Any] = []
        for row in rows:
            values = pick(row)
            values = list(values) if len(names) > 1 else [values]
            for slot in slots:
                i = slot[0]
                value = values[i]
                if value is slot[2]:
                    values[i] = slot[3]
                else:
                    slot[2] = value
                    values[i] = slot[3] = slot[1](value)
            out.append(tuple(values) if self.positional else dict(zip(names, values, strict=True)))
        return out

    def execute(
        self,
        connection: Connection,
        rows: Sequence[Mapping[str, Any]],
        keys: Sequence[str] | None = None,
    ) -> None:
        """Run the statement for every row, in the caller's transaction; `keys` as for
        `parameters`."""
        if not rows:
            return
        if self.recordset is not None:
            names = keys or [name for name, _ in self.binds]
            connection.exec_driver_sql(self.recordset, {"rows": _document(rows, names)})
        elif self.values is not None:
            head, tail = self.values
            flat = [value for row in self.parameters(rows, keys) for value in row]
            execute_values(connection, head, len(self.binds), flat, tail)
        else:
            connection.exec_driver_sql(self.sql, self.parameters(rows, keys))


def _from_recordset(dialect: Dialect, statement: Insert, columns: Sequence[str], sql: str) -> str:
    """`statement` (compiled to `sql`) as one INSERT of the rows of a JSON document."""
    table = statement.table
    quote = dialect.identifier_preparer.quote
    names = ", ".join(quote(c) for c in columns)
    typed = ", ".join(f"{quote(c)} {table.c[c].type.compile(dialect)}" for c in columns)
    _, conflict, tail = sql.partition(" ON CONFLICT ")
    return (
        f"INSERT INTO {quote(table.name)} ({names}) SELECT {names}"
        f" FROM json_to_recordset(%(rows)s::json) AS rows({typed}){conflict}{tail}"
    )


def _document(rows: Sequence[Mapping[str, Any]], names: Sequence[str]) -> str:
    """The `names` of every row as one JSON array of objects, for ``json_to_recordset``."""
    # A value the rows share (one instant stamped on every row) is encoded once; the
    # values live as long as the call, so their ids do too.
    encoded: dict[int, str] = {}

    def default(value: object) -> str:
        text = encoded.get(id(value))
        if text is None:
            text = encoded[id(value)] = _json(value)
        return text

    return json.dumps([{n: row[n] for n in names} for row in rows], default=default)


def _json(value: object) -> str:
    """A date or an aware instant as ISO 8601 text, which PostgreSQL reads back exactly."""
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            raise ValueError(f"{value.isoformat()} has no UTC offset; the store keeps instants")
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not stored through a JSON document")


class BulkUpdate:
    """``UPDATE table SET columns WHERE keys`` for many rows (dicts by column name): one
    ``UPDATE ... FROM (VALUES ...)`` on SQLite (an executemany before SQLite 3.33), one
    ``UPDATE ... FROM json_to_recordset`` on PostgreSQL."""

    def __init__(
        self, dialect: Dialect, table: Table, keys: Sequence[str], columns: Sequence[str]
    ) -> None:
        self.names = [*columns, *keys]
        if dialect.name == "postgresql":
            quote = dialect.identifier_preparer.quote
            name = quote(table.name)
            sets = ", ".join(f"{quote(c)} = rows.{quote(c)}" for c in columns)
            typed = ", ".join(f"{quote(c)} {table.c[c].type.compile(dialect)}" for c in self.names)
            where = " AND ".join(f"{name}.{quote(k)} = rows.{quote(k)}" for k in keys)
            self.recordset: str | None = (
                f"UPDATE {name} SET {sets} FROM json_to_recordset(%(rows)s::json)"
                f" AS rows({typed}) WHERE {where}"
            )
            self.bulk: Bulk | None = None
        else:
            statement = table.update().values({c: bindparam(f"b_{c}") for c in columns})
            for key in keys:
                statement = statement.where(table.c[key] == bindparam(f"b_{key}"))
            self.recordset, self.bulk = None, Bulk(dialect, statement)
            # ``UPDATE ... FROM (VALUES ...)`` (SQLite 3.33 and later): the binds' values,
            # converted by `bulk`, as the rows of a VALUES list, columns then keys.
            self.values: tuple[str, str] | None = None
            order = [name[2:] for name, _ in self.bulk.binds]
            if sqlite3.sqlite_version_info >= (3, 33) and sorted(order) == sorted(self.names):
                quote = dialect.identifier_preparer.quote
                name = quote(table.name)
                at = {column: n for n, column in enumerate(order, start=1)}
                sets = ", ".join(f"{quote(c)} = v.column{at[c]}" for c in columns)
                where = " AND ".join(f"{name}.{quote(k)} = v.column{at[k]}" for k in keys)
                self.values = (f"UPDATE {name} SET {sets} FROM (", f") AS v WHERE {where}")

    def execute(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Update every row's record, in the caller's transaction."""
        if not rows:
            return
        names = self.names
        if self.recordset is not None:
            connection.exec_driver_sql(self.recordset, {"rows": _document(rows, names)})
        elif self.bulk is not None:
            # The binds are named b_<column>: the rows' values are read under the columns'.
            keys = [n[2:] for n, _ in self.bulk.binds]
            if self.values is None:
                self.bulk.execute(connection, rows, keys)
                return
            head, tail = self.values
            flat = [value for row in self.bulk.parameters(rows, keys) for value in row]
            execute_values(connection, head, len(keys), flat, tail)


#: The most values one statement may bind when the driver cannot tell (SQLite's own
#: default before 3.32).
_SQLITE_VARIABLES: Final = 999


@lru_cache(maxsize=64)
def _values_sql(head: str, width: int, rows: int, tail: str) -> str:
    row = "(" + ", ".join("?" * width) + ")"
    return f"{head} VALUES {', '.join([row] * rows)} {tail}".rstrip()


def execute_values(
    connection: Connection, head: str, width: int, values: Sequence[Any], tail: str = ""
) -> int:
    """Run ``{head} VALUES (?, ...), (?, ...) {tail}`` on SQLite for rows of `width` values
    laid end to end in `values`; the rows they inserted or changed (their row counts
    summed).

    This, not the driver's ``executemany``, is the SQLite path where threads of one
    process write: the driver releases Python's GIL around every row it steps, and a
    thread that gives the GIL up while another runs Python waits up to the switch
    interval (5 ms) to get it back, all the while holding the database's one write
    lock. A statement gives it up once. The rows go in statements of a power of two
    rows each (a batch of 1,000: 512 + 256 + 128 + 64 + 32 + 8), each as large as SQLite's
    limit on bound values allows: the driver keeps every statement it compiled (a
    hundred and more, some megabytes each at these sizes), and batch sizes vary, so
    a statement per size would fill memory with statements used once.
    """
    if not values:
        return 0
    dbapi = connection.connection.dbapi_connection
    limit = (
        dbapi.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        if isinstance(dbapi, sqlite3.Connection)
        else _SQLITE_VARIABLES
    )
    most = 1 << (max(1, limit // width).bit_length() - 1)  # rows, a power of two
    changed = 0
    start, rows = 0, len(values) // width
    while rows:
        size = min(most, 1 << (rows.bit_length() - 1))
        end = start + size * width
        sql = _values_sql(head, width, size, tail)
        changed += connection.exec_driver_sql(sql, tuple(values[start:end])).rowcount
        start, rows = end, rows - size
    return changed
