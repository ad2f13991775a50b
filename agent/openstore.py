"""The live clocks' tables in the agent's state database.

The agent keeps ONE SQLite file (WAL); the core opens it and hands connections
around. These tables hold what `agent.liveclocks.LiveClocks` needs to survive a
restart, so that nothing per case has to live in memory:

    clock_cases    one row per open case: its item, its level as last evaluated,
                   and `next_at`, the instant (POSIX seconds) of its next level
                   change -- NULL when none is due. `next_at` is indexed: the
                   index IS the priority queue, and ``next_at = 0`` marks a case
                   whose events changed and which must be evaluated at once.
    clock_events   the events of open cases the clock reads (not workflow steps,
                   which do not move a clock), in a compact form (`encode`).
    clock_closed   tombstones of closed cases, so that a late or repeated event
                   does not bring one back; pruned after a retention period.
    clock_flags    every flag raised: (department, case_id, level, ref) is
                   unique, which is what makes a flag never raised twice.
    clock_counts   flags raised and unknown-item events per department and
                   level, kept in the same transaction so counters survive restarts.
    clock_notices  notices waiting for the department's webhook, written with
                   the flag and deleted once delivered (or given up on).

Every function takes a connection and never commits; the caller owns the
transaction.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Final

from casework.events import CaseEvent

__all__ = [
    "DUE_NOW",
    "SCHEMA",
    "create_tables",
    "decode",
    "encode",
]

#: `next_at` of a case whose events changed: evaluate it before anything else.
DUE_NOW: Final = 0.0

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS clock_cases (
    department TEXT NOT NULL,
    case_id    TEXT NOT NULL,
    item       TEXT NOT NULL,
    level      TEXT NOT NULL DEFAULT '',
    next_at    REAL,
    PRIMARY KEY (department, case_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS clock_cases_next_at ON clock_cases (next_at)
    WHERE next_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS clock_events (
    department TEXT NOT NULL,
    case_id    TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    line       TEXT NOT NULL,
    PRIMARY KEY (department, case_id, event_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS clock_closed (
    department TEXT NOT NULL,
    case_id    TEXT NOT NULL,
    closed_at  REAL NOT NULL,
    PRIMARY KEY (department, case_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS clock_closed_at ON clock_closed (closed_at);
CREATE TABLE IF NOT EXISTS clock_flags (
    department TEXT NOT NULL,
    case_id    TEXT NOT NULL,
    level      TEXT NOT NULL,
    ref        TEXT NOT NULL DEFAULT '',
    reached_at REAL NOT NULL,
    raised_at  REAL NOT NULL,
    PRIMARY KEY (department, case_id, level, ref)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS clock_counts (
    what       TEXT NOT NULL,
    department TEXT NOT NULL,
    level      TEXT NOT NULL DEFAULT '',
    n          INTEGER NOT NULL,
    PRIMARY KEY (what, department, level)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS clock_notices (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    department TEXT NOT NULL,
    body       TEXT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    due_at     REAL NOT NULL
);
"""


def encode(event: CaseEvent) -> str:
    """What the clock reads of an event, as a short JSON array (version 1).

    Much cheaper to write and read back than the wire format's validated
    JSON: the event was validated once, when the core read it.
    """
    return json.dumps(
        [
            1,
            event.event_id,
            event.type,
            event.at.isoformat(),
            event.item,
            event.promised_days,
            event.legal_days,
            event.reason,
            event.days,
            event.result,
        ],
        ensure_ascii=False,
        separators=(",", ":"),
    )


def decode(department: str, case_id: str, text: str) -> CaseEvent:
    """The event `encode` stored for the case (department, case_id)."""
    _, event_id, kind, at, item, promised, legal, reason, days, result = json.loads(text)
    return CaseEvent(
        event_id,
        case_id,
        department,
        item,
        kind,
        datetime.fromisoformat(at),
        promised_days=promised,
        legal_days=legal,
        reason=reason,
        days=days,
        result=result,
    )


def create_tables(conn: sqlite3.Connection) -> None:
    """Create the live clocks' tables if they are missing (idempotent, no commit)."""
    for statement in SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)


def mark_due(conn: sqlite3.Connection, cases: Iterable[tuple[str, str, str]]) -> None:
    """Add or wake cases (department, case_id, item): their events changed."""
    conn.executemany(
        "INSERT INTO clock_cases (department, case_id, item, level, next_at)"
        " VALUES (?, ?, ?, '', 0) ON CONFLICT (department, case_id) DO UPDATE SET next_at = 0",
        cases,
    )


def wake_all(conn: sqlite3.Connection) -> None:
    """Mark every open case due (the catalog or the calendar changed)."""
    conn.execute("UPDATE clock_cases SET next_at = 0")


def add_events(conn: sqlite3.Connection, rows: Iterable[tuple[str, str, str, str]]) -> None:
    """Store events (department, case_id, event_id, `encode`d); an event_id is kept once."""
    conn.executemany(
        "INSERT OR IGNORE INTO clock_events (department, case_id, event_id, line)"
        " VALUES (?, ?, ?, ?)",
        rows,
    )


def earliest(conn: sqlite3.Connection) -> float | None:
    """The earliest `next_at` of any open case, or None when no change is due."""
    row = conn.execute("SELECT min(next_at) FROM clock_cases WHERE next_at IS NOT NULL").fetchone()
    return None if row is None or row[0] is None else float(row[0])


def due_cases(conn: sqlite3.Connection, now: float, limit: int) -> list[tuple[str, str, str, str]]:
    """Up to `limit` cases (department, case_id, item, level) due at `now`, earliest first."""
    rows = conn.execute(
        "SELECT department, case_id, item, level FROM clock_cases"
        " WHERE next_at IS NOT NULL AND next_at <= ? ORDER BY next_at LIMIT ?",
        (now, limit),
    ).fetchall()
    return [(str(d), str(c), str(i), str(v)) for d, c, i, v in rows]


def case_events(conn: sqlite3.Connection, department: str, case_id: str) -> list[CaseEvent]:
    """The stored events of one case."""
    rows = conn.execute(
        "SELECT line FROM clock_events WHERE department = ? AND case_id = ?",
        (department, case_id),
    ).fetchall()
    return [decode(department, case_id, str(r[0])) for r in rows]


def is_closed(conn: sqlite3.Connection, department: str, case_id: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM clock_closed WHERE department = ? AND case_id = ?", (department, case_id)
    ).fetchone()
    return row is not None


def set_case(
    conn: sqlite3.Connection, department: str, case_id: str, level: str, next_at: float | None
) -> None:
    """Record a case's level and next change after an evaluation.

    The caller evaluates inside one write transaction (``BEGIN IMMEDIATE``), so
    no event can arrive between reading the case and writing this.
    """
    conn.execute(
        "UPDATE clock_cases SET level = ?, next_at = ? WHERE department = ? AND case_id = ?",
        (level, next_at, department, case_id),
    )


def close_case(conn: sqlite3.Connection, department: str, case_id: str, closed_at: float) -> None:
    """Forget a closed case's clock and events, keeping a tombstone."""
    conn.execute(
        "DELETE FROM clock_cases WHERE department = ? AND case_id = ?", (department, case_id)
    )
    conn.execute(
        "DELETE FROM clock_events WHERE department = ? AND case_id = ?", (department, case_id)
    )
    conn.execute(
        "INSERT OR REPLACE INTO clock_closed (department, case_id, closed_at) VALUES (?, ?, ?)",
        (department, case_id, closed_at),
    )


def prune_closed(conn: sqlite3.Connection, before: float) -> int:
    """Drop tombstones and flags of cases closed before `before`; returns how many cases."""
    doomed = "SELECT department, case_id FROM clock_closed WHERE closed_at < ?"
    conn.execute(
        f"DELETE FROM clock_flags WHERE (department, case_id) IN ({doomed})",
        (before,),
    )
    return conn.execute("DELETE FROM clock_closed WHERE closed_at < ?", (before,)).rowcount


def add_flag(
    conn: sqlite3.Connection,
    department: str,
    case_id: str,
    level: str,
    ref: str,
    reached_at: float,
    raised_at: float,
) -> bool:
    """Record a flag; False when it had been raised already (it is not raised again)."""
    cursor = conn.execute(
        "INSERT OR IGNORE INTO clock_flags"
        " (department, case_id, level, ref, reached_at, raised_at) VALUES (?, ?, ?, ?, ?, ?)",
        (department, case_id, level, ref, reached_at, raised_at),
    )
    return cursor.rowcount == 1


def bump(conn: sqlite3.Connection, what: str, department: str, level: str = "") -> None:
    """Add one to a persistent count (``flags`` by level, ``unknown_items``)."""
    conn.execute(
        "INSERT INTO clock_counts (what, department, level, n) VALUES (?, ?, ?, 1)"
        " ON CONFLICT (what, department, level) DO UPDATE SET n = n + 1",
        (what, department, level),
    )


def counts(conn: sqlite3.Connection, what: str) -> dict[tuple[str, str], int]:
    """Persistent counts of one kind: (department, level) -> n."""
    rows = conn.execute(
        "SELECT department, level, n FROM clock_counts WHERE what = ?", (what,)
    ).fetchall()
    return {(str(d), str(v)): int(n) for d, v, n in rows}


def level_counts(conn: sqlite3.Connection) -> dict[tuple[str, str], int]:
    """Open cases by (department, level), evaluated ones only (read once at start)."""
    rows = conn.execute(
        "SELECT department, level, count(*) FROM clock_cases WHERE level != ''"
        " GROUP BY department, level"
    ).fetchall()
    return {(str(d), str(v)): int(n) for d, v, n in rows}


def add_notice(conn: sqlite3.Connection, department: str, body: str, due_at: float) -> None:
    conn.execute(
        "INSERT INTO clock_notices (department, body, due_at) VALUES (?, ?, ?)",
        (department, body, due_at),
    )


def due_notices(
    conn: sqlite3.Connection, now: float, limit: int
) -> list[tuple[int, str, str, int]]:
    """Notices (id, department, body, attempts) due at `now`, oldest first."""
    rows = conn.execute(
        "SELECT id, department, body, attempts FROM clock_notices WHERE due_at <= ?"
        " ORDER BY due_at, id LIMIT ?",
        (now, limit),
    ).fetchall()
    return [(int(i), str(d), str(b), int(a)) for i, d, b, a in rows]


def next_notice_at(conn: sqlite3.Connection) -> float | None:
    row = conn.execute("SELECT min(due_at) FROM clock_notices").fetchone()
    return None if row is None or row[0] is None else float(row[0])


def pending_notices(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM clock_notices").fetchone()[0])


def retry_notice(conn: sqlite3.Connection, notice_id: int, due_at: float) -> None:
    conn.execute(
        "UPDATE clock_notices SET attempts = attempts + 1, due_at = ? WHERE id = ?",
        (due_at, notice_id),
    )


def drop_notices(conn: sqlite3.Connection, ids: Sequence[int]) -> None:
    conn.executemany("DELETE FROM clock_notices WHERE id = ?", [(i,) for i in ids])
