"""Building the server's `Engine` from a database URL.

SQLite is the embedded default (``sqlite:///var/esup.db``, relative to the
working directory); PostgreSQL is reached through psycopg 3
(``postgresql+psycopg://user@host:5432/name``). On SQLite every connection
turns on write-ahead logging, so readers do not block the writer, and waits
for a busy database instead of failing at once.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from server.errors import DatabaseURLError

__all__ = [
    "DEFAULT_URL",
    "exclusive",
    "make_engine",
    "shown",
    "sqlite_writer",
    "start_writing",
]

#: The embedded database, relative to the working directory.
DEFAULT_URL: Final = "sqlite:///var/esup.db"

#: How long a SQLite connection waits for another writer, in milliseconds.
SQLITE_BUSY_TIMEOUT_MS: Final = 30_000


def _parse(url: str | URL) -> URL:
    try:
        return make_url(url)
    except ArgumentError as exc:
        raise DatabaseURLError(str(url), str(exc)) from exc


def shown(url: str | URL) -> str:
    """The URL as it may be printed: any password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unreadable database URL>"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()


def make_engine(url: str | URL = DEFAULT_URL, **kwargs: Any) -> Engine:
    """An Engine for `url`; the caller disposes of it.

    For a SQLite file the folder holding it is created if missing and WAL is
    enabled on every connection. `kwargs` go to `sqlalchemy.create_engine`.
    Raises `DatabaseURLError` for a URL SQLAlchemy cannot read or a database
    it has no driver for.
    """
    parsed = _parse(url)
    sqlite = parsed.get_backend_name() == "sqlite"
    file = parsed.database or ""
    if sqlite and file and file != ":memory:" and not file.startswith("file:"):
        Path(file).parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = create_engine(parsed, **kwargs)
    except (ArgumentError, ImportError) as exc:
        raise DatabaseURLError(shown(parsed), str(exc)) from exc
    if sqlite:
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


class _ProcessesLock:
    """A lock of one engine's SQLite database across the server's threads and processes:
    a lock for this process's threads and, for a database file, an advisory lock
    (``flock``) on the file beside it named ``<database>-<name>``."""

    def __init__(self, engine: Engine, name: str) -> None:
        self.threads = threading.Lock()
        file = engine.url.database or ""
        in_memory = not file or file == ":memory:" or file.startswith("file:")
        self.path = None if in_memory else Path(f"{file}-{name}")
        self.fd: int | None = None

    def acquire(self, deadline: float) -> bool:
        if not self.threads.acquire(timeout=max(deadline - time.monotonic(), 0.0)):
            return False
        if self.path is None:
            return True
        try:
            if self.fd is None:
                # Read-only is enough for flock, and a file another user created (a
                # command run as root beside the service) stays usable.
                self.fd = os.open(self.path, os.O_RDONLY | os.O_CREAT, 0o644)
            pause = 0.0001
            while True:
                try:
                    fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return True
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        self.threads.release()
                        return False
                    time.sleep(pause)  # short: a holder's transaction is a few ms
                    pause = min(pause * 2, 0.002)
        except BaseException:
            self.threads.release()
            raise

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        self.threads.release()

    def __del__(self) -> None:
        if self.fd is not None:
            os.close(self.fd)


_LOCKS: weakref.WeakKeyDictionary[Engine, dict[str, _ProcessesLock]] = weakref.WeakKeyDictionary()
_LOCKS_LOCK = threading.Lock()


@contextmanager
def _holding(engine: Engine, name: str, statement: str) -> Iterator[None]:
    """Hold the `_ProcessesLock` `name` of `engine`'s database; after SQLite's busy timeout
    raise `OperationalError` for `statement` as SQLite would ("database is locked")."""
    with _LOCKS_LOCK:
        locks = _LOCKS.setdefault(engine, {})
        lock = locks.get(name)
        if lock is None:
            lock = locks[name] = _ProcessesLock(engine, name)
    if not lock.acquire(time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000):
        raise OperationalError(
            statement,
            None,
            sqlite3.OperationalError(
                f"database is locked: the {name} lock was held for "
                f"{SQLITE_BUSY_TIMEOUT_MS // 1000} s"
            ),
        )
    try:
        yield
    finally:
        lock.release()


def sqlite_writer(engine: Engine) -> AbstractContextManager[None]:
    """Hold the writer lock for the SQLite database of `engine`, to be taken before
    ``BEGIN IMMEDIATE``: SQLite has one writer, and a connection that finds it busy
    sleeps in steps of up to 100 ms before it looks again, so writers queue here
    instead and each starts about the moment the one before commits: threads of this
    process on a lock of their own, the server's processes (ingest workers, the
    projection process) on an advisory lock of the file ``<database>-writer``. Waits as
    long as SQLite's busy timeout, then raises `OperationalError` as SQLite would
    ("database is locked"). A writer that does not take it still meets SQLite's own
    busy timeout."""
    return _holding(engine, "writer", "BEGIN IMMEDIATE")


#: Where `exclusive(reads_first=True)` keeps, in `Connection.info`, what `start_writing` needs.
_WRITES: Final = "esup.exclusive.writes"


@contextmanager
def exclusive(engine: Engine, key: int, *, reads_first: bool = False) -> Iterator[Connection]:
    """A transaction that no other `exclusive(engine, key)` runs beside, on any process.

    It reads and writes knowing no other holder of `key` changes what it read
    before it commits. PostgreSQL: the transaction-scoped advisory lock `key` (a
    signed 64-bit integer), taken first. SQLite: the lock ``lock-<key>`` of the
    server's threads and processes (`sqlite_writer`'s kind), then ``BEGIN
    IMMEDIATE``, the database's single write lock, before the first read. With
    `reads_first`, on SQLite the write lock is taken only at `start_writing`:
    work between the reads and the writes does not hold up other writers (ingest),
    and what only holders of `key` write cannot change meanwhile. The reads before
    it are not one snapshot: each sees the latest commit (what other writers
    change, events and the projection queue, may move between two of them).
    Commits when the block ends, rolls back when it raises.
    """
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
            yield connection
            connection.commit()
        return
    with _holding(engine, f"lock-{key}", "BEGIN IMMEDIATE"), engine.connect() as connection:
        if not reads_first:
            with sqlite_writer(engine):
                connection.exec_driver_sql("BEGIN IMMEDIATE")
                yield connection
                connection.commit()
            return
        with ExitStack() as writes:
            connection.info[_WRITES] = (engine, writes)
            try:
                yield connection
                connection.commit()
            finally:
                connection.info.pop(_WRITES, None)


def start_writing(connection: Connection) -> None:
    """From here on the holder of an `exclusive(reads_first=True)` block writes: on SQLite
    its reads end and the database's write lock is taken (``BEGIN IMMEDIATE``). Nothing
    to do anywhere else, nor when it writes already."""
    pending = connection.info.pop(_WRITES, None)
    if pending is None:
        return
    engine, writes = pending
    connection.rollback()  # the reads' transaction: nothing was written in it
    writes.enter_context(sqlite_writer(engine))
    connection.exec_driver_sql("BEGIN IMMEDIATE")
