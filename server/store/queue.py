"""The projection queue: cases whose stored events their `cases` row does not yet reflect.

    mark(connection, keys, now)        in the transaction that stores events: queue their cases
    ProjectionQueue(engine).take(n)    up to n queued cases, each with its version
    ProjectionQueue(engine).done(taken) forget those still at the version taken
    ProjectionQueue(engine).lag()      how many are queued and since when

The queue is written in the same transaction as the events (`EventStore`), so
an event is never stored without its case queued, whatever happens to the
process afterwards. Each mark of a queued case raises its `version`; the
projector takes (case, version), re-derives the case from all its events, and
then deletes the row only where the version is still the one it took. Events
committed after the take raise the version, so their case stays queued and is
derived again: nothing is skipped, whatever order concurrent transactions
commit in (unlike a cursor on `events.id`).

Driver-level statements only (no per-row type processing): this is the ingest path.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, func, select

from server.store import tables
from server.store.bulk import execute_values

__all__ = ["Lag", "ProjectionQueue", "Taken", "mark", "sqlite_instant"]

#: (department, case_id)
Key = tuple[str, str]
#: A queued case as taken: (department, case_id, version).
Taken = tuple[str, str, int]

_MARK_SQLITE = "INSERT INTO projection_queue (department, case_id, version, marked_at)"
_REMARK_SQLITE = (
    "ON CONFLICT (department, case_id) DO UPDATE SET version = projection_queue.version + 1"
)
# The keys as one JSON array of [department, case_id]. Ingest's statement on PostgreSQL
# (`server.store.events`) queues the cases of the events it stores itself.
_MARK_PG = (
    "INSERT INTO projection_queue (department, case_id, version, marked_at)"
    " SELECT k->>0, k->>1, 1, %s FROM json_array_elements(%s::json) AS k"
    " ON CONFLICT (department, case_id) DO UPDATE SET version = projection_queue.version + 1"
)
_DONE_SQLITE = "DELETE FROM projection_queue WHERE department = ? AND case_id = ? AND version = ?"
_DONE_PG = (
    "DELETE FROM projection_queue AS q USING json_array_elements(%s::json) AS k"
    " WHERE q.department = k->>0 AND q.case_id = k->>1 AND q.version = (k->>2)::bigint"
)


def sqlite_instant(at: datetime) -> str:
    """An aware instant as `tables.UTCDateTime` stores it on SQLite: naive UTC text."""
    return at.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _instant(value: object) -> datetime | None:
    """An aggregate of `marked_at` as an aware instant (SQLite may return it as stored)."""
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return None


def mark(connection: Connection, keys: Iterable[Key], now: datetime) -> None:
    """Queue the cases `keys` in `connection`'s transaction (the one storing their events).

    Keys are written sorted, so concurrent transactions lock them in one order.
    """
    ordered = sorted(set(keys))
    if not ordered:
        return
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(_MARK_PG, (now, json.dumps(ordered)))
    else:
        stamp = sqlite_instant(now)
        values: list[object] = []
        for department, case_id in ordered:
            values += (department, case_id, 1, stamp)
        execute_values(connection, _MARK_SQLITE, 4, values, _REMARK_SQLITE)


@dataclass(frozen=True, slots=True)
class Lag:
    """How far the projection is behind: queued cases, and when the oldest was marked."""

    pending: int
    oldest: datetime | None
    #: When the case queued last was first marked: how recently ingest queued new work.
    newest: datetime | None = None


class ProjectionQueue:
    """The queue on `engine` (migrated to the head)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def take(self, limit: int) -> list[Taken]:
        """Up to `limit` queued cases, the longest-waiting first, with their versions.

        Taking does not remove them: `done` does, after they are projected.
        """
        q = tables.projection_queue.c
        query = select(q.department, q.case_id, q.version).order_by(q.marked_at).limit(limit)
        with self.engine.connect() as connection:
            return [(d, c, v) for d, c, v in connection.execute(query)]

    def done(self, taken: Sequence[Taken]) -> None:
        """Forget the cases of `taken` whose version is still the one taken."""
        if not taken:
            return
        with self.engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.exec_driver_sql(_DONE_PG, (json.dumps(list(taken)),))
            else:
                connection.exec_driver_sql(_DONE_SQLITE, list(taken))

    def lag(self) -> Lag:
        """How many cases are queued and when the oldest of them was marked."""
        q = tables.projection_queue.c
        with self.engine.connect() as connection:
            pending, oldest, newest = connection.execute(
                select(func.count(), func.min(q.marked_at), func.max(q.marked_at))
            ).one()
        return Lag(int(pending), _instant(oldest), _instant(newest))

    def span(self) -> tuple[datetime, datetime] | None:
        """When the oldest and the newest queued case were marked; None when none is.

        Two look-ups on the `marked_at` index, however long the queue: the
        background projection asks every few tens of milliseconds.
        """
        q = tables.projection_queue.c
        first = select(q.marked_at).order_by(q.marked_at).limit(1)
        last = select(q.marked_at).order_by(q.marked_at.desc()).limit(1)
        with self.engine.connect() as connection:
            oldest = _instant(connection.execute(first).scalar_one_or_none())
            newest = _instant(connection.execute(last).scalar_one_or_none())
        if oldest is None or newest is None:
            return None
        return oldest, newest

    def pending(self) -> int:
        """How many cases are queued."""
        return self.lag().pending
