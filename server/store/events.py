"""`EventStore`: the raw events, append-only, and what was refused or went missing.

    add_batch(agent, events)        store a batch in one transaction -> accepted | duplicate
                                    (and queue its cases for projection, in that transaction)
    add_in(connection, agent, ...)  the same inside the caller's `write_transaction`
    events_of_case(dept, case_id)   a case's events, rebuilt from the stored wire JSON
    quarantine(agent, body, reason) keep a rejected event and why
    quarantine_many(agent, pairs)   keep a batch's rejected events, in one transaction
    record_gap(agent, source, ...)  note a jump in an agent's `seq`

An event is identified by (department, event_id); storing it again is a
duplicate, never an error, so an agent may resend a batch after any failure.
The batch goes to the driver as it is (``executemany`` on SQLite, one
``INSERT ... SELECT FROM json_to_recordset(...)`` on PostgreSQL), without SQLAlchemy's
per-row type processing: this is the ingest path.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

from sqlalchemy import Connection, Engine, func, select

from casework.events import CaseEvent
from casework.wire import dumps_line, parse_event
from server.store import tables
from server.store.queue import mark, sqlite_instant

__all__ = [
    "ACCEPTED",
    "DUPLICATE",
    "EventStore",
    "Gap",
    "Outcome",
    "Quarantined",
    "write_transaction",
]

Outcome = Literal["accepted", "duplicate"]
ACCEPTED: Final[Outcome] = "accepted"
DUPLICATE: Final[Outcome] = "duplicate"


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Quarantined:
    """One rejected event as kept: who sent it, when, why, and its body as received."""

    received_at: datetime
    agent: str
    reason: str
    body: str


@dataclass(frozen=True, slots=True)
class Gap:
    """A jump in an agent's sequence for one source: `expected` was due, `got` came."""

    agent: str
    source: str
    expected: int
    got: int
    detected_at: datetime


_COLUMNS: Final = (
    "department, event_id, case_id, item, type, at, seq, source_agent, received_at, body"
)
_INSERT_SQLITE: Final = f"INSERT INTO events ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
# The keys of the batch already stored, found through the unique (department, event_id) index.
_EXISTING_SQLITE: Final = (
    "SELECT department, event_id FROM events WHERE (department, event_id) IN"
    " (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?))"
)
# One statement for the batch, its rows sent as one JSON document (encoded in C here and
# read in C there; psycopg quotes each element of a text array in Python). ON CONFLICT
# DO NOTHING waits for a concurrent transaction inserting the same key and skips it if
# that one commits.
_INSERT_PG: Final = (
    f"INSERT INTO events ({_COLUMNS})"
    " SELECT d, e, c, i, t, a::timestamptz, s, %s, %s, b FROM json_to_recordset(%s::json)"
    " AS u(d text, e text, c text, i text, t text, a text, s bigint, b text)"
    " ON CONFLICT (department, event_id) DO NOTHING RETURNING department, event_id"
)


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that will write, committed when the block ends.

    On SQLite the transaction takes the write lock at once (``BEGIN IMMEDIATE``,
    waiting out the busy timeout), so what it reads stays true until it
    commits: no other writer can slip in between its reads and its writes.
    """
    with engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        yield connection


class EventStore:
    """The raw event store on `engine` (SQLite or PostgreSQL, migrated to the head).

    `now` is the clock that stamps `received_at` and `detected_at`; it must
    return aware datetimes.
    """

    def __init__(self, engine: Engine, *, now: Callable[[], datetime] = _utcnow) -> None:
        name = engine.dialect.name
        if name not in ("sqlite", "postgresql"):
            raise NotImplementedError(f"esup stores events in SQLite or PostgreSQL, not {name!r}")
        self.engine = engine
        self.now = now

    def add_batch(
        self, agent: str, events: Sequence[CaseEvent], bodies: Sequence[str] | None = None
    ) -> list[Outcome]:
        """Store `events` from `agent` in one transaction; one outcome per event, in order.

        ``"accepted"``: this call stored the event. ``"duplicate"``: an event
        with the same (department, event_id) was stored before, by an earlier
        call or earlier in this batch; the stored one is kept unchanged. The
        cases of the accepted events are queued for projection in the same
        transaction (`server.store.queue`). When this returns, every accepted
        event is committed; when it raises, nothing of the batch was stored,
        and resending it is safe. `bodies`, when given, are the events' texts
        as received (kept as `body`); else each is written with `dumps_line`.
        """
        if not events:
            return []
        with write_transaction(self.engine) as connection:
            return self.add_in(connection, agent, events, bodies)

    def add_in(
        self,
        connection: Connection,
        agent: str,
        events: Sequence[CaseEvent],
        bodies: Sequence[str] | None = None,
    ) -> list[Outcome]:
        """`add_batch` inside the caller's transaction (`write_transaction`)."""
        if not events:
            return []
        received_at = self.now()
        first: dict[tuple[str, str], int] = {}
        for index, event in enumerate(events):
            first.setdefault((event.department, event.event_id), index)
        # Body order, so `id` keeps the order of arrival. Two servers inserting the same
        # keys in different orders could deadlock on PostgreSQL; it aborts one of them,
        # whose agent resends: an agent resends a batch in the order it sent it.
        order = list(first)
        if connection.dialect.name == "postgresql":
            stored = self._insert_pg(connection, agent, events, bodies, order, first, received_at)
        else:
            stored = self._insert_sqlite(
                connection, agent, events, bodies, order, first, received_at
            )
        mark(
            connection,
            {(events[first[k]].department, events[first[k]].case_id) for k in stored},
            received_at,
        )
        return [
            ACCEPTED
            if first[(e.department, e.event_id)] == i and (e.department, e.event_id) in stored
            else DUPLICATE
            for i, e in enumerate(events)
        ]

    @staticmethod
    def _insert_sqlite(
        connection: Connection,
        agent: str,
        events: Sequence[CaseEvent],
        bodies: Sequence[str] | None,
        order: list[tuple[str, str]],
        first: dict[tuple[str, str], int],
        received_at: datetime,
    ) -> set[tuple[str, str]]:
        found = connection.exec_driver_sql(_EXISTING_SQLITE, (json.dumps(order),))
        existing = {(d, e) for d, e in found}
        received = sqlite_instant(received_at)
        rows = []
        for key in order:
            if key in existing:
                continue
            index = first[key]
            event = events[index]
            rows.append(
                (
                    event.department,
                    event.event_id,
                    event.case_id,
                    event.item,
                    event.type,
                    sqlite_instant(event.at),
                    event.seq,
                    agent,
                    received,
                    bodies[index] if bodies is not None else dumps_line(event),
                )
            )
        if rows:
            connection.exec_driver_sql(_INSERT_SQLITE, rows)
        return {(row[0], row[1]) for row in rows}

    @staticmethod
    def _insert_pg(
        connection: Connection,
        agent: str,
        events: Sequence[CaseEvent],
        bodies: Sequence[str] | None,
        order: list[tuple[str, str]],
        first: dict[tuple[str, str], int],
        received_at: datetime,
    ) -> set[tuple[str, str]]:
        rows = []
        for key in order:
            index = first[key]
            event = events[index]
            rows.append(
                {
                    "d": event.department,
                    "e": event.event_id,
                    "c": event.case_id,
                    "i": event.item,
                    "t": event.type,
                    "a": event.at.isoformat(),
                    "s": event.seq,
                    "b": bodies[index] if bodies is not None else dumps_line(event),
                }
            )
        columns = (agent, received_at, json.dumps(rows))
        result = connection.exec_driver_sql(_INSERT_PG, columns)
        return {(d, e) for d, e in result}

    def events_of_case(self, department: str, case_id: str) -> list[CaseEvent]:
        """Every stored event of the case (department, case_id), in the order they arrived.

        Each is rebuilt from its stored wire JSON, so it equals the event
        that was added (including its unknown fields). Empty for an unknown case.
        """
        query = (
            select(tables.events.c.body)
            .where(tables.events.c.department == department)
            .where(tables.events.c.case_id == case_id)
            .order_by(tables.events.c.id)
        )
        with self.engine.connect() as connection:
            bodies = connection.execute(query).scalars().all()
        return [
            parse_event(json.loads(body), source=f"stored event of {department}/{case_id}")
            for body in bodies
        ]

    def count(self) -> int:
        """How many events are stored."""
        with self.engine.connect() as connection:
            return connection.execute(select(func.count()).select_from(tables.events)).scalar_one()

    def quarantine(self, agent: str, body: str, reason: str) -> None:
        """Keep an event `agent` sent that was rejected: its `body` as received and the `reason`."""
        row = {"received_at": self.now(), "agent": agent, "reason": reason, "body": body}
        with self.engine.begin() as connection:
            connection.execute(tables.quarantine.insert(), row)

    def quarantine_many(self, agent: str, rejected: Sequence[tuple[str, str]]) -> None:
        """Keep every (body, reason) of `rejected` that `agent` sent, in one transaction."""
        if not rejected:
            return
        with self.engine.begin() as connection:
            self.quarantine_in(connection, agent, rejected)

    def quarantine_in(
        self, connection: Connection, agent: str, rejected: Sequence[tuple[str, str]]
    ) -> None:
        """`quarantine_many` inside the caller's transaction."""
        if not rejected:
            return
        now = self.now()
        rows = [
            {"received_at": now, "agent": agent, "reason": reason, "body": body}
            for body, reason in rejected
        ]
        connection.execute(tables.quarantine.insert(), rows)

    def quarantined(self, *, limit: int = 100) -> list[Quarantined]:
        """The latest `limit` rejected events, newest first."""
        q = tables.quarantine.c
        query = select(q.received_at, q.agent, q.reason, q.body).order_by(q.id.desc()).limit(limit)
        with self.engine.connect() as connection:
            return [Quarantined(*row) for row in connection.execute(query)]

    def record_gap(self, agent: str, source: str, expected: int, got: int) -> None:
        """Note that `agent`'s events from `source` jumped from `expected` to `got` (> expected)."""
        row = {
            "agent": agent,
            "source": source,
            "expected_seq": expected,
            "got_seq": got,
            "detected_at": self.now(),
        }
        with self.engine.begin() as connection:
            connection.execute(tables.seq_gaps.insert(), row)

    def gaps(self, *, limit: int = 100) -> list[Gap]:
        """The latest `limit` recorded gaps, newest first."""
        g = tables.seq_gaps.c
        query = (
            select(g.agent, g.source, g.expected_seq, g.got_seq, g.detected_at)
            .order_by(g.id.desc())
            .limit(limit)
        )
        with self.engine.connect() as connection:
            return [Gap(*row) for row in connection.execute(query)]
