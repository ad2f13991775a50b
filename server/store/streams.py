"""`StreamStore`: what each agent's sources delivered last, and the gaps in their `seq`.

    observe(agent, seqs) -> [Gap]   note a batch's sequence numbers per source; new gaps
    observe_in(connection, ...)     the same inside the caller's transaction

An agent numbers the events of each of its sources 1, 2, 3, ... without gaps
(`seq`). A source is named by the event's optional ``source`` field ("" when
it names none). For each (agent, source) the `streams` table keeps the highest
`seq` seen and when the agent last delivered; a `seq` above the next expected
one is a gap, recorded in `seq_gaps` with what was expected and what came.
A stream seen for the first time expects 1. Late arrivals below the highest
`seq` seen (resends, events filling an earlier gap) record nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Final

from sqlalchemy import Connection, Engine, select

from server.store import tables
from server.store.events import Gap
from server.store.queue import sqlite_instant

__all__ = ["SOURCE_MAX", "StreamStore", "find_gaps"]

#: The longest source name, as long as the tables' source columns.
SOURCE_MAX: Final = 256


def _utcnow() -> datetime:
    return datetime.now(UTC)


def find_gaps(
    last_seq: int | None, seqs: Iterable[int]
) -> tuple[list[tuple[int, int]], int | None]:
    """(gaps as (expected, got), new highest seq) after `seqs` arrive on a stream at `last_seq`.

    `last_seq` None is a stream that has delivered no `seq` yet: it expects 1.
    """
    last = last_seq
    gaps: list[tuple[int, int]] = []
    for seq in sorted(set(seqs)):
        expected = 1 if last is None else last + 1
        if seq > expected:
            gaps.append((expected, seq))
        if last is None or seq > last:
            last = seq
    return gaps, last


class StreamStore:
    """The per-source streams of every agent on `engine` (migrated to the head).

    `now` stamps `last_seen_at` and the gaps' `detected_at`; it returns aware datetimes.
    """

    def __init__(self, engine: Engine, *, now: Callable[[], datetime] = _utcnow) -> None:
        self.engine = engine
        self.now = now
        name = engine.dialect.name
        self._postgres = name == "postgresql"
        mark = "%s" if self._postgres else "?"
        # One statement: the stream created if new, its `last_seen_at` set and its row
        # locked either way, and its `last_seq` as it was returned. Driver-level SQL, as
        # the rest of ingest: one of these runs with every batch.
        self._touch = (
            "INSERT INTO streams (agent, source, last_seq, last_seen_at)"
            f" VALUES ({mark}, {mark}, NULL, {mark})"
            " ON CONFLICT (agent, source) DO UPDATE SET last_seen_at = excluded.last_seen_at"
            " RETURNING last_seq"
        )
        self._advance = (
            f"UPDATE streams SET last_seq = {mark} WHERE agent = {mark} AND source = {mark}"
        )
        # SQLite has one writer at a time; taking it here, before the read, spares a
        # transaction that read first the "database is locked" error when it writes.
        self._lock = threading.Lock() if name == "sqlite" else None

    def observe(self, agent: str, seqs: Mapping[str, Iterable[int]]) -> list[Gap]:
        """Record that `agent` delivered on each source in `seqs` the given sequence numbers.

        Updates each stream's highest `seq` and `last_seen_at` (a source with no
        numbers only has `last_seen_at` updated) and records every new gap, all
        in one transaction. Returns the gaps recorded, by source then `seq`.
        """
        if not seqs:
            return []
        if self._lock is None:
            return self._observe(agent, seqs)
        with self._lock:
            return self._observe(agent, seqs)

    def _observe(self, agent: str, seqs: Mapping[str, Iterable[int]]) -> list[Gap]:
        with self.engine.begin() as connection:
            return self.observe_in(connection, agent, seqs)

    def observe_in(
        self, connection: Connection, agent: str, seqs: Mapping[str, Iterable[int]]
    ) -> list[Gap]:
        """`observe` inside the caller's transaction; on SQLite one that already holds the
        write lock (`server.store.events.write_transaction`)."""
        now = self.now()
        stamp: datetime | str = now if self._postgres else sqlite_instant(now)
        found: list[Gap] = []
        for source in sorted(seqs):
            last_seq = connection.exec_driver_sql(self._touch, (agent, source, stamp)).scalar_one()
            gaps, last = find_gaps(last_seq, seqs[source])
            if last != last_seq:
                connection.exec_driver_sql(self._advance, (last, agent, source))
            for expected, got in gaps:
                found.append(Gap(agent, source, expected, got, now))
                connection.execute(
                    tables.seq_gaps.insert(),
                    {
                        "agent": agent,
                        "source": source,
                        "expected_seq": expected,
                        "got_seq": got,
                        "detected_at": now,
                    },
                )
        return found

    def last_seq(self, agent: str, source: str = "") -> int | None:
        """The highest `seq` `agent` delivered on `source`; None when none was."""
        s = tables.streams.c
        query = select(s.last_seq).where(s.agent == agent, s.source == source)
        with self.engine.connect() as connection:
            value: int | None = connection.execute(query).scalar_one_or_none()
        return value
