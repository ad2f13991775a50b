"""The exchange-database source: rows of a configured query, polled with keyset pagination.

    ExchangeDb(config, conn, outbox, departments, clock=..., zone=..., engine=...)
      poll()   the next page of rows after the checkpoint into the outbox

The query (any SELECT the database understands) must return the columns
named by `updated_at_column` and `id_column`; the agent wraps it:

    SELECT * FROM (<query>) AS esup_rows
    WHERE updated_at > :u OR (updated_at = :u AND id > :i)
    ORDER BY updated_at, id LIMIT :page_size

and keeps the (updated_at, id) of the last row read as its checkpoint in
the state database, written in the same transaction as the page's events.
A row updated again later comes again with its new updated_at, as a new
event if its event_id column says so (or a duplicate the server ignores).
A row the mapping or the wire format refuses is logged, counted and kept in
``exchangedb_rejected`` with its key and reason; the rows beside it go on.
Keyset pagination misses a row committed later with an updated_at lower
than the checkpoint: have the workflow system stamp updated_at at commit,
or restrict the query to rows older than a few seconds.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable, Collection
from datetime import date, datetime
from typing import Final
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, create_engine, text

from agent.config import ExchangeDbConfig
from agent.outbox import Outbox
from agent.sources.mapping import event_from_row
from agent.statedb import transaction
from casework.errors import EventError
from casework.events import CaseEvent

__all__ = ["REJECTED_TABLE", "ExchangeDb", "decode_key", "encode_key"]

logger = logging.getLogger(__name__)

REJECTED_TABLE: Final = """
CREATE TABLE IF NOT EXISTS exchangedb_rejected (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    row_key TEXT NOT NULL,
    reason TEXT NOT NULL,
    rejected_at REAL NOT NULL
)
"""


def encode_key(value: object) -> object:
    """A checkpoint value as JSON, its type kept (datetime, date, int, str, float)."""
    if isinstance(value, datetime):
        return {"datetime": value.isoformat()}
    if isinstance(value, date):
        return {"date": value.isoformat()}
    if value is None or isinstance(value, int | float | str):
        return value
    return {"text": str(value)}


def decode_key(value: object) -> object:
    """The inverse of `encode_key`."""
    if isinstance(value, dict):
        if "datetime" in value:
            return datetime.fromisoformat(value["datetime"])
        if "date" in value:
            return date.fromisoformat(value["date"])
        return value.get("text")
    return value


class ExchangeDb:
    """Polls one exchange database; see the module docstring."""

    def __init__(
        self,
        config: ExchangeDbConfig,
        conn: sqlite3.Connection,
        outbox: Outbox,
        departments: Collection[str],
        *,
        clock: Callable[[], float] = time.time,
        zone: ZoneInfo | None = None,
        engine: Engine | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.conn = conn
        self.outbox = outbox
        self.departments = frozenset(departments)
        self.clock = clock
        self.zone = zone or ZoneInfo(config.timezone)
        self._own_engine = engine is None
        self.engine = engine or create_engine(config.url, pool_pre_ping=True, pool_size=1)
        self.last_event_at: float | None = None
        self.events_read = 0
        self.events_rejected = 0
        with transaction(conn):
            conn.execute(REJECTED_TABLE)
        quote = self.engine.dialect.identifier_preparer.quote
        updated, key = quote(config.updated_at_column), quote(config.id_column)
        self._first = text(
            f"SELECT * FROM ({config.query}) AS esup_rows"
            f" ORDER BY esup_rows.{updated}, esup_rows.{key} LIMIT :n"
        )
        self._next = text(
            f"SELECT * FROM ({config.query}) AS esup_rows"
            f" WHERE esup_rows.{updated} > :u"
            f" OR (esup_rows.{updated} = :u AND esup_rows.{key} > :i)"
            f" ORDER BY esup_rows.{updated}, esup_rows.{key} LIMIT :n"
        )

    @property
    def interval(self) -> float:
        return self.config.poll_seconds

    def start(self, wake: Callable[[], None]) -> None:
        """Nothing to watch: the database is polled every `poll_seconds`."""

    def close(self) -> None:
        if self._own_engine:
            self.engine.dispose()

    def checkpoint(self) -> tuple[object, object] | None:
        """(updated_at, id) of the last row read, None before the first."""
        row = self.conn.execute(
            "SELECT value FROM checkpoints WHERE source = ?", (self.name,)
        ).fetchone()
        if row is None:
            return None
        value = json.loads(row[0])
        return decode_key(value["updated_at"]), decode_key(value["id"])

    def poll(self) -> bool:
        """One page after the checkpoint into the outbox; True when the page was full."""
        if self.outbox.paused():
            return False
        mark = self.checkpoint()
        with self.engine.connect() as db:
            if mark is None:
                result = db.execute(self._first, {"n": self.config.page_size})
            else:
                result = db.execute(
                    self._next, {"u": mark[0], "i": mark[1], "n": self.config.page_size}
                )
            rows = [dict(r) for r in result.mappings()]
        if not rows:
            return False
        good: list[CaseEvent] = []
        bad: list[tuple[str, str]] = []
        for row in rows:
            key = f"{row.get(self.config.id_column)!r}"
            try:
                event = event_from_row(
                    row,
                    self.config.columns,
                    self.config.constants,
                    self.zone,
                    source=f"{self.name} row {key}",
                )
                if event.department not in self.departments:
                    raise EventError(
                        "is not one of this agent's departments",
                        field="department",
                        value=event.department,
                    )
                good.append(event)
            except EventError as exc:
                bad.append((key, exc.reason))
        last = rows[-1]
        mark_json = json.dumps(
            {
                "updated_at": encode_key(last[self.config.updated_at_column]),
                "id": encode_key(last[self.config.id_column]),
            }
        )
        now = self.clock()
        with transaction(self.conn):
            queued = self.outbox.put(self.conn, self.name, good)
            self.conn.executemany(
                "INSERT INTO exchangedb_rejected (source, row_key, reason, rejected_at)"
                " VALUES (?, ?, ?, ?)",
                [(self.name, key, reason, now) for key, reason in bad],
            )
            self.conn.execute(
                "INSERT INTO checkpoints (source, value, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (source) DO UPDATE SET value = excluded.value,"
                " updated_at = excluded.updated_at",
                (self.name, mark_json, now),
            )
        self.outbox.committed(queued)
        self.events_read += len(good)
        self.events_rejected += len(bad)
        if good:
            self.last_event_at = now
        for key, reason in bad:
            logger.warning("exchange database %s: row %s rejected: %s", self.name, key, reason)
        return len(rows) >= self.config.page_size
