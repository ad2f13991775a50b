"""`EventStore`: the raw events, append-only, and what was refused or went missing.

    add_batch(agent, events)        store a batch in one transaction -> accepted | duplicate
    events_of_case(dept, case_id)   a case's events, rebuilt from the stored wire JSON
    quarantine(agent, body, reason) keep a rejected event and why
    quarantine_many(agent, pairs)   keep a batch's rejected events, in one transaction
    record_gap(agent, source, ...)  note a jump in an agent's `seq`

An event is identified by (department, event_id); storing it again is a
duplicate, never an error, so an agent may resend a batch after any failure.
Core statements only: this is the ingest path.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from sqlalchemy import Engine, Insert, func, select
from sqlalchemy.dialects import postgresql, sqlite

from casework.events import CaseEvent
from casework.wire import dumps_line, parse_event
from server.store import tables

__all__ = ["ACCEPTED", "DUPLICATE", "EventStore", "Gap", "Outcome", "Quarantined"]

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


def _insert_ignoring_duplicates(engine: Engine) -> Insert:
    """``INSERT INTO events ... ON CONFLICT (department, event_id) DO NOTHING`` for the dialect."""
    columns = [tables.events.c.department, tables.events.c.event_id]
    name = engine.dialect.name
    if name == "postgresql":
        return postgresql.insert(tables.events).on_conflict_do_nothing(index_elements=columns)
    if name == "sqlite":
        return sqlite.insert(tables.events).on_conflict_do_nothing(index_elements=columns)
    raise NotImplementedError(f"esup stores events in SQLite or PostgreSQL, not {name!r}")


class EventStore:
    """The raw event store on `engine` (SQLite or PostgreSQL, migrated to the head).

    `now` is the clock that stamps `received_at` and `detected_at`; it must
    return aware datetimes.
    """

    def __init__(self, engine: Engine, *, now: Callable[[], datetime] = _utcnow) -> None:
        self.engine = engine
        self.now = now
        self._insert = _insert_ignoring_duplicates(engine).returning(
            tables.events.c.department, tables.events.c.event_id
        )

    def add_batch(self, agent: str, events: Sequence[CaseEvent]) -> list[Outcome]:
        """Store `events` from `agent` in one transaction; one outcome per event, in order.

        ``"accepted"``: this call stored the event. ``"duplicate"``: an event
        with the same (department, event_id) was stored before, by an earlier
        call or earlier in this batch; the stored one is kept unchanged. When
        this returns, every accepted event is committed; when it raises,
        nothing of the batch was stored, and resending it is safe.
        """
        if not events:
            return []
        received_at = self.now()
        first: dict[tuple[str, str], int] = {}
        rows: list[dict[str, Any]] = []
        for index, event in enumerate(events):
            key = (event.department, event.event_id)
            if key in first:
                continue  # a repeat inside the batch: the first one decides
            first[key] = index
            rows.append(
                {
                    "department": event.department,
                    "event_id": event.event_id,
                    "case_id": event.case_id,
                    "item": event.item,
                    "type": event.type,
                    "at": event.at,
                    "seq": event.seq,
                    "source_agent": agent,
                    "received_at": received_at,
                    "body": dumps_line(event),
                }
            )
        with self.engine.begin() as connection:
            result = connection.execute(self._insert, rows)
            stored = {(row.department, row.event_id) for row in result}
        return [
            ACCEPTED
            if first[(e.department, e.event_id)] == i and (e.department, e.event_id) in stored
            else DUPLICATE
            for i, e in enumerate(events)
        ]

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
        now = self.now()
        rows = [
            {"received_at": now, "agent": agent, "reason": reason, "body": body}
            for body, reason in rejected
        ]
        with self.engine.begin() as connection:
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
