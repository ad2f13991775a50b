"""The agent's state database: one SQLite file for everything that must survive a crash.

    open_state_db(path) -> sqlite3.Connection     schema created, WAL on
    transaction(conn)                              BEGIN IMMEDIATE ... COMMIT | ROLLBACK

The outbox, the per-source sequence numbers, the dead letters, every drop
folder's per-file offsets and every exchange database's checkpoint live in
this one file, so that a source's position and the events it read are
committed in one transaction: a crash can neither lose nor double a line.
Other agent modules keep their own tables in the same file; they create them
with ``CREATE TABLE IF NOT EXISTS`` on a connection from `open_state_db`.

Durability: write-ahead logging with ``synchronous=FULL``. With
``synchronous=NORMAL`` a power cut may roll back the last transactions; the
offsets roll back with their events, but a drop-folder file may already have
been moved to ``done/`` or a batch deleted after the server's answer, and a
file moved to ``done/`` whose lines were rolled back would never be read
again. The agent commits whole chunks of lines per transaction, so FULL's
one fsync per commit costs little.

Each thread uses a connection of its own (handed to it, never shared at once;
hence check_same_thread off); writers wait up to `BUSY_TIMEOUT_MS` for each other.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

__all__ = ["BUSY_TIMEOUT_MS", "CACHE_KIB", "SCHEMA", "open_state_db", "transaction"]

#: How long a connection waits for another writer, in milliseconds.
BUSY_TIMEOUT_MS: Final = 60_000
#: SQLite's page cache per connection, in KiB (its default is 2 MiB). The agent holds a
#: connection per thread and each reads little at a time (the outbox's newest rows, a
#: batch to send); a bounded cache keeps their sum small (docs/benchmarks.md).
CACHE_KIB: Final = 512

#: The core tables. Sizes are in bytes, instants in unix seconds (UTC).
SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    body TEXT NOT NULL,
    size INTEGER NOT NULL,
    queued_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS source_seq (
    source TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    body TEXT NOT NULL,
    reason TEXT NOT NULL,
    status INTEGER NOT NULL,
    dead_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS dropfolder_files (
    source TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    name TEXT NOT NULL,
    offset INTEGER NOT NULL,
    lines INTEGER NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (source, fingerprint)
);
CREATE TABLE IF NOT EXISTS checkpoints (
    source TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at REAL NOT NULL
);
"""


def open_state_db(path: Path) -> sqlite3.Connection:
    """A connection to the state database at `path` (its folder created), schema in place.

    The connection is in autocommit mode: write through `transaction`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False
    )
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        conn.close()
        raise OSError(f"{path}: SQLite refused write-ahead logging (journal_mode is {mode})")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
    with transaction(conn):
        for statement in SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction: ``BEGIN IMMEDIATE`` (the write lock taken at once), then
    ``COMMIT``, or ``ROLLBACK`` when the block raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
