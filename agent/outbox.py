"""The durable outbox: events waiting for the server, numbered per source, capped on disk.

    EventSink                    hears every batch put into the outbox (protocol)
    OutboxRow                    one waiting event as stored
    Outbox(cap_bytes, sinks, clock)
      load(conn)                 counters from the database (once, at start)
      put(conn, source, events)  inside the caller's transaction: seq, rows, sinks' record
      committed(events)          after that transaction committed: counters, sinks' committed
      take(conn, limit)          the oldest waiting rows, in order
      settle(conn, done, dead)   delete delivered rows, move rejected ones to dead letters
      replay(conn, ids)          dead letters back into the outbox with new seq numbers
      depth() size_bytes() cap_bytes() paused() dead_letters()   read-only views

Every event put gets the next `seq` of its source (1, 2, 3, ... without gaps,
the numbers kept in ``source_seq`` in the same transaction) and its
``source`` field, as the wire format describes. A row leaves the outbox only
through `settle`, i.e. after the server answered for it.

Back-pressure: when the bodies of the waiting events reach `cap_bytes`,
`paused()` is true and the sources stop reading until delivery makes room.
Nothing is dropped; a source's last chunk may overshoot the cap by one chunk.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from agent.statedb import transaction
from casework.events import CaseEvent
from casework.wire import dumps_line, parse_json_line

__all__ = ["DeadLetter", "EventSink", "Outbox", "OutboxRow", "Queued", "stamp"]

logger = logging.getLogger(__name__)


class EventSink(Protocol):
    """Hears the good events a source puts into the outbox (e.g. the live clocks).

    `record` runs inside the transaction that writes the outbox rows and must
    not commit; raising rolls the whole chunk back. `committed` runs after that
    transaction committed. Both get the events as stamped (``seq``, ``source``).
    A sink may hear an event again: a dead letter replayed, a file rewritten
    shorter and read again, the same line in two files dropped at once; the
    event id (with its department) says it is the same event.
    """

    def record(self, conn: sqlite3.Connection, events: Sequence[CaseEvent]) -> None: ...

    def committed(self, events: Sequence[CaseEvent]) -> None: ...


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One waiting event: `body` is its JSON line (with seq and source), `size` its bytes."""

    id: int
    source: str
    seq: int
    event_id: str
    body: str
    size: int
    queued_at: float


@dataclass(frozen=True, slots=True)
class Queued:
    """What one `Outbox.put` queued: how many events, the bytes of their bodies, and the
    stamped events when there are sinks to hear them (else empty: stamping costs)."""

    events: list[CaseEvent]
    count: int = 0
    size: int = 0


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event the server refused: its reason and the HTTP status of the answer."""

    id: int
    source: str
    seq: int
    event_id: str
    body: str
    reason: str
    status: int
    dead_at: float


_SLOTS: Final = (*(f.name for f in dataclasses.fields(CaseEvent)), "ts")


def stamp(event: CaseEvent, source: str, seq: int) -> CaseEvent:
    """`event` with the agent's `seq` and `source` (any the writer put there are replaced).

    A field-by-field copy: `dataclasses.replace` would validate `at` again and
    costs more than reading the line did.
    """
    new = object.__new__(CaseEvent)
    for name in _SLOTS:
        object.__setattr__(new, name, getattr(event, name))
    object.__setattr__(new, "seq", seq)
    object.__setattr__(new, "extra", {**event.extra, "source": source})
    return new


class Outbox:
    """The outbox tables of a state database, with counters kept in memory for scrapes.

    One `Outbox` is shared by the threads of an agent; each passes its own
    connection. The counters are exact for this process's own writes after
    `load`; another process writing the same file (a ``dead-letters replay``
    while the agent runs) is seen at the next `load`.
    """

    def __init__(
        self,
        cap_bytes: int,
        *,
        sinks: Sequence[EventSink] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._cap = cap_bytes
        self.sinks = tuple(sinks)
        self.clock = clock
        self._lock = threading.Lock()
        self._depth = 0
        self._size = 0
        self._dead = 0
        self._was_paused = False
        #: Set whenever events are committed into the outbox; delivery waits on it.
        self.arrived = threading.Event()

    # -- views for metrics and status -------------------------------------------------

    def depth(self) -> int:
        """Events waiting for delivery."""
        return self._depth

    def size_bytes(self) -> int:
        """Bytes of the waiting events' bodies."""
        return self._size

    def cap_bytes(self) -> int:
        """The disk cap on `size_bytes` at which the sources pause."""
        return self._cap

    def paused(self) -> bool:
        """True while the outbox is at its cap: the sources read nothing more (back-pressure)."""
        return self._size >= self._cap

    def dead_letters(self) -> int:
        """Events the server refused, kept in the dead-letter table."""
        return self._dead

    def _note_pause(self) -> None:
        """Log when back-pressure starts and ends (once each)."""
        paused = self.paused()
        if paused == self._was_paused:
            return
        self._was_paused = paused
        if paused:
            logger.warning(
                "outbox at its cap (%d of %d bytes, %d events waiting): the sources pause"
                " until delivery makes room; nothing is dropped",
                self._size,
                self._cap,
                self._depth,
            )
        else:
            logger.info("outbox below its cap again: the sources resume")

    # -- writing ----------------------------------------------------------------------

    def load(self, conn: sqlite3.Connection) -> None:
        """Read the counters from the database."""
        depth, size = conn.execute("SELECT count(*), coalesce(sum(size), 0) FROM outbox").fetchone()
        (dead,) = conn.execute("SELECT count(*) FROM dead_letters").fetchone()
        with self._lock:
            self._depth, self._size, self._dead = int(depth), int(size), int(dead)

    def put(
        self,
        conn: sqlite3.Connection,
        source: str,
        events: Sequence[CaseEvent],
        raws: Sequence[str | None] | None = None,
    ) -> Queued:
        """Queue `events` of `source`, inside the caller's open transaction.

        `raws`, when given, are the events' JSON texts as read (None where
        there is none); an event whose writer set no ``seq`` nor ``source`` is
        stored as that text with both added at its end. Call `committed` with the
        result once the transaction committed.
        """
        if not events:
            return Queued([])
        row = conn.execute("SELECT last_seq FROM source_seq WHERE source = ?", (source,)).fetchone()
        last = int(row[0]) if row else 0
        now = self.clock()
        stamped: list[CaseEvent] = []
        rows = []
        total = 0
        if raws is None:
            raws = [None] * len(events)
        for seq, (event, raw) in enumerate(zip(events, raws, strict=True), start=last + 1):
            if raw is not None and event.seq is None and "source" not in event.extra:
                # At the end: should the text still name "seq" (as null, or spelled with
                # \u escapes), the last value is the one JSON parsers keep.
                body = f'{raw[:-1]},"seq":{seq},"source":{json.dumps(source)}}}'
                if self.sinks:
                    stamped.append(stamp(event, source, seq))
            else:
                done = stamp(event, source, seq)
                body = dumps_line(done)
                if self.sinks:
                    stamped.append(done)
            size = len(body.encode())
            total += size
            rows.append((source, seq, event.event_id, body, size, now))
        conn.executemany(
            "INSERT INTO outbox (source, seq, event_id, body, size, queued_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )
        conn.execute(
            "INSERT INTO source_seq (source, last_seq) VALUES (?, ?)"
            " ON CONFLICT (source) DO UPDATE SET last_seq = excluded.last_seq",
            (source, last + len(rows)),
        )
        for sink in self.sinks:
            sink.record(conn, stamped)
        return Queued(stamped, len(rows), total)

    def committed(self, queued: Queued) -> None:
        """After the transaction of `put` committed: counters up, sinks told, delivery woken."""
        if not queued.count:
            return
        with self._lock:
            self._depth += queued.count
            self._size += queued.size
        self._note_pause()
        if queued.events:
            for sink in self.sinks:
                sink.committed(queued.events)
        self.arrived.set()

    def take(self, conn: sqlite3.Connection, limit: int) -> list[OutboxRow]:
        """The oldest `limit` waiting rows, oldest first (so each source's seq ascends)."""
        cursor = conn.execute(
            "SELECT id, source, seq, event_id, body, size, queued_at FROM outbox"
            " ORDER BY id LIMIT ?",
            (limit,),
        )
        return [OutboxRow(*r) for r in cursor]

    def settle(
        self,
        conn: sqlite3.Connection,
        done: Iterable[OutboxRow],
        dead: Iterable[tuple[OutboxRow, str, int]] = (),
    ) -> None:
        """In one transaction: delete `done` rows; move `dead` ones (row, reason, HTTP status)
        to the dead letters."""
        done = list(done)
        dead = list(dead)
        now = self.clock()
        with transaction(conn):
            conn.executemany("DELETE FROM outbox WHERE id = ?", [(r.id,) for r in done])
            conn.executemany(
                "INSERT INTO dead_letters (source, seq, event_id, body, reason, status, dead_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(r.source, r.seq, r.event_id, r.body, why, st, now) for r, why, st in dead],
            )
            conn.executemany("DELETE FROM outbox WHERE id = ?", [(r.id,) for r, _, _ in dead])
        gone = done + [r for r, _, _ in dead]
        with self._lock:
            # Never below zero: rows another process put in (a replay) are not counted here.
            self._depth = max(0, self._depth - len(gone))
            self._size = max(0, self._size - sum(r.size for r in gone))
            self._dead += len(dead)
        self._note_pause()

    # -- dead letters -----------------------------------------------------------------

    def list_dead(self, conn: sqlite3.Connection, limit: int | None = None) -> list[DeadLetter]:
        """Dead letters, oldest first."""
        cursor = conn.execute(
            "SELECT id, source, seq, event_id, body, reason, status, dead_at FROM dead_letters"
            " ORDER BY id LIMIT ?",
            (-1 if limit is None else limit,),
        )
        return [DeadLetter(*r) for r in cursor]

    def replay(self, conn: sqlite3.Connection, ids: Sequence[int] | None = None) -> int:
        """Put dead letters (`ids`, or all) back into the outbox, each with the next seq of
        its source; the number replayed. Run after fixing what made the server refuse them."""
        with transaction(conn):
            letters = self.list_dead(conn)
            if ids is not None:
                wanted = set(ids)
                letters = [d for d in letters if d.id in wanted]
            queued: list[Queued] = []
            by_source: dict[str, list[CaseEvent]] = {}
            for letter in letters:
                event = parse_json_line(letter.body, source=f"dead letter {letter.id}")
                by_source.setdefault(letter.source, []).append(event)
            for source, events in by_source.items():
                queued.append(self.put(conn, source, events))
            conn.executemany("DELETE FROM dead_letters WHERE id = ?", [(d.id,) for d in letters])
        with self._lock:
            self._dead = max(0, self._dead - len(letters))
        for one in queued:
            self.committed(one)
        return len(letters)
