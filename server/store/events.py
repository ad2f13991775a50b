"""`EventStore`: the raw events, append-only, and what was refused or went missing.

    add_batch(agent, events)        store a batch in one transaction -> accepted | duplicate
                                    (and queue its cases for projection, in that transaction)
    add_in(connection, agent, ...)  the same inside the caller's `write_transaction`
    add_rows_in(connection, ...)    the same for rows read straight from the wire (ingest)
    prepare(agent, rows)            such rows made ready before the write lock is taken,
    add_prepared_in(connection, p)  then stored
    events_of_case(dept, case_id)   a case's events, rebuilt from the stored wire JSON
    quarantine(agent, body, reason) keep a rejected event and why
    quarantine_many(agent, pairs)   keep a batch's rejected events, in one transaction
    record_gap(agent, source, ...)  note a jump in an agent's `seq`

An event is identified by (department, event_id); storing it again is a
duplicate, never an error, so an agent may resend a batch after any failure.
The batch goes to the driver as it is (multi-row ``VALUES`` on SQLite, one
``INSERT ... SELECT FROM unnest(...)`` of binary arrays on PostgreSQL that also
queues the cases), without SQLAlchemy's per-row type processing: this is the
ingest path.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from sqlalchemy import Connection, Engine, func, select

from casework.events import CaseEvent
from casework.wire import dumps_line, parse_event
from server.store import tables
from server.store.bulk import execute_values
from server.store.database import sqlite_writer
from server.store.queue import mark

__all__ = [
    "ACCEPTED",
    "DUPLICATE",
    "EventKey",
    "EventRow",
    "EventStore",
    "Gap",
    "Outcome",
    "Prepared",
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


#: An event as `EventStore.add_rows_in` takes it:
#: (department, event_id, case_id, item, type, at, seq, body as received).
EventRow = tuple[str, str, str, str, str, datetime, int | None, str]
#: An event's key: (department, event_id).
EventKey = tuple[str, str]

_COLUMNS: Final = (
    "department, event_id, case_id, item, type, at, seq, source_agent, received_at, body"
)
_INSERT_SQLITE: Final = f"INSERT INTO events ({_COLUMNS})"
_ON_CONFLICT_SQLITE: Final = "ON CONFLICT (department, event_id) DO NOTHING"
# The last `n` rows inserted: under the write lock, the rowids of new rows follow the table's
# largest (SQLite picks another only once the largest possible rowid is taken).
_LATEST_SQLITE: Final = "SELECT department, event_id FROM events ORDER BY id DESC LIMIT ?"
# One statement for the batch: the rows sent as one array per column in PostgreSQL's binary
# format (`%b`: psycopg writes those in C, where a JSON document cost twice the time to
# encode here and to read there, and text arrays are quoted element by element in Python),
# the cases of those stored queued for projection, sorted so that concurrent transactions
# lock them in one order (`server.store.queue`), and the keys that were stored before
# returned. ON CONFLICT DO NOTHING waits for a concurrent transaction inserting the same
# key and skips it if that one commits.
_INSERT_PG: Final = (
    "WITH batch AS MATERIALIZED ("
    " SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[],"
    " %b::timestamptz[], %b::bigint[], %b::text[]) AS u(d, e, c, i, t, a, s, b)),"
    " stored AS ("
    f" INSERT INTO events ({_COLUMNS})"
    " SELECT d, e, c, i, t, a, s, %s, %s, b FROM batch"
    " ON CONFLICT (department, event_id) DO NOTHING RETURNING department, event_id, case_id),"
    " queued AS ("
    " INSERT INTO projection_queue (department, case_id, version, marked_at)"
    " SELECT DISTINCT department, case_id, 1, %s::timestamptz FROM stored"
    " ORDER BY department, case_id"
    " ON CONFLICT (department, case_id) DO UPDATE SET version = projection_queue.version + 1)"
    " SELECT d, e FROM batch WHERE NOT EXISTS"
    " (SELECT FROM stored WHERE stored.department = batch.d AND stored.event_id = batch.e)"
)


def _keepable(body: str) -> str:
    """A rejected body as the store keeps it: as received, but for a NUL character
    (which PostgreSQL's text cannot hold), kept as its JSON escape \\u0000."""
    return body.replace("\x00", "\\u0000") if "\x00" in body else body


def _sqlite_text(at: datetime) -> str:
    """An aware instant as `tables.UTCDateTime` stores it on SQLite: naive UTC text
    (`server.store.queue.sqlite_instant`, a third cheaper: ingest writes one per event)."""
    return at.astimezone(UTC).isoformat(" ", "microseconds")[:-6]


@dataclass(frozen=True, slots=True)
class Prepared:
    """Rows from `agent` made ready to store (`EventStore.prepare`): `values` are what the
    statement binds (SQLite: every row's values end to end; PostgreSQL: one list per
    column), `cases` the rows' cases (SQLite)."""

    agent: str
    rows: Sequence[EventRow]
    received_at: datetime
    values: list[Any]
    cases: set[tuple[str, str]]


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that will write, committed when the block ends.

    On SQLite the transaction takes the write lock at once (``BEGIN IMMEDIATE``,
    after this process's writer lock, `sqlite_writer`, then waiting out the busy
    timeout), so what it reads stays true until it commits: no other writer can
    slip in between its reads and its writes.
    """
    if engine.dialect.name != "sqlite":
        with engine.begin() as connection:
            yield connection
        return
    with sqlite_writer(engine), engine.begin() as connection:
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
        first: dict[EventKey, int] = {}
        rows: list[EventRow] = []
        for index, event in enumerate(events):
            key = (event.department, event.event_id)
            if key not in first:
                first[key] = index
                body = bodies[index] if bodies is not None else dumps_line(event)
                rows.append(
                    (
                        event.department,
                        event.event_id,
                        event.case_id,
                        event.item,
                        event.type,
                        event.at,
                        event.seq,
                        body,
                    )
                )
        before = self.add_rows_in(connection, agent, rows)
        return [
            ACCEPTED
            if first[key := (e.department, e.event_id)] == i and key not in before
            else DUPLICATE
            for i, e in enumerate(events)
        ]

    def add_rows_in(
        self, connection: Connection, agent: str, rows: Sequence[EventRow]
    ) -> set[EventKey]:
        """Store `rows` from `agent` inside the caller's transaction (`write_transaction`) and
        queue the cases of those stored; the keys of those that were stored before.

        The rows' keys (department, event_id) must be distinct. The body of each
        is kept as given. The rest as `add_batch`: this is its single pass, for
        ingest, which reads its rows without making `CaseEvent`s.
        """
        return self.add_prepared_in(connection, self.prepare(agent, rows))

    def prepare(self, agent: str, rows: Sequence[EventRow]) -> Prepared:
        """`rows` from `agent` as `add_prepared_in` stores them, stamped received now: the
        work that need not wait for the write lock, done before it is taken."""
        received_at = self.now()
        if self.engine.dialect.name == "postgresql":
            columns = [list(column) for column in zip(*rows, strict=True)]
            return Prepared(agent, rows, received_at, columns, set())
        received = _sqlite_text(received_at)
        values: list[object] = []
        for d, e, c, i, t, a, s, b in rows:
            values += (d, e, c, i, t, _sqlite_text(a), s, agent, received, b)
        return Prepared(agent, rows, received_at, values, {(r[0], r[2]) for r in rows})

    def add_prepared_in(self, connection: Connection, prepared: Prepared) -> set[EventKey]:
        """`add_rows_in` of rows already `prepare`d."""
        if not prepared.rows:
            return set()
        # Body order, so `id` keeps the order of arrival. Two servers inserting the same
        # keys in different orders could deadlock on PostgreSQL; it aborts one of them,
        # whose agent resends: an agent resends a batch in the order it sent it.
        if connection.dialect.name == "postgresql":
            return self._insert_pg(connection, prepared)
        return self._insert_sqlite(connection, prepared)

    @staticmethod
    def _insert_sqlite(connection: Connection, prepared: Prepared) -> set[EventKey]:
        rows = prepared.rows
        inserted = execute_values(
            connection, _INSERT_SQLITE, 10, prepared.values, _ON_CONFLICT_SQLITE
        )
        if inserted == len(rows):
            before: set[EventKey] = set()
            cases = prepared.cases
        else:
            stored = set(connection.exec_driver_sql(_LATEST_SQLITE, (inserted,)).tuples())
            before = {(row[0], row[1]) for row in rows} - stored
            cases = {(row[0], row[2]) for row in rows if (row[0], row[1]) in stored}
        mark(connection, cases, prepared.received_at)
        return before

    @staticmethod
    def _insert_pg(connection: Connection, prepared: Prepared) -> set[EventKey]:
        at = prepared.received_at
        parameters = (*prepared.values, prepared.agent, at, at)
        return set(connection.exec_driver_sql(_INSERT_PG, parameters).tuples())

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
        row = {"received_at": self.now(), "agent": agent, "reason": reason, "body": _keepable(body)}
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
            {"received_at": now, "agent": agent, "reason": reason, "body": _keepable(body)}
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
