"""Building the server's `Engine` from a database URL.

SQLite is the embedded default (``sqlite:///var/esup.db``, relative to the
working directory); PostgreSQL is reached through psycopg 3
(``postgresql+psycopg://user@host:5432/name``). On SQLite every connection
turns on write-ahead logging, so readers do not block the writer, and waits
for a busy database instead of failing at once.
"""

from __future__ import annotations

import sqlite3
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from server.errors import DatabaseURLError

__all__ = ["DEFAULT_URL", "exclusive", "make_engine", "shown", "sqlite_writer"]

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


_WRITERS: weakref.WeakKeyDictionary[Engine, threading.Lock] = weakref.WeakKeyDictionary()
_WRITERS_LOCK = threading.Lock()


@contextmanager
def sqlite_writer(engine: Engine) -> Iterator[None]:
    """Hold this process's writer lock for the SQLite database of `engine`, to be taken
    before ``BEGIN IMMEDIATE``: SQLite has one writer, and a thread that finds it busy
    sleeps in steps of up to 100 ms before it looks again, so threads of one process
    (requests of several agents at once) queue here instead and each starts the moment
    the one before commits. Waits as long as SQLite's busy timeout, then raises
    `OperationalError` as SQLite would ("database is locked"). Writers in other
    processes still meet SQLite's busy timeout."""
    with _WRITERS_LOCK:
        lock = _WRITERS.get(engine)
        if lock is None:
            lock = _WRITERS[engine] = threading.Lock()
    if not lock.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
        raise OperationalError(
            "BEGIN IMMEDIATE",
            None,
            sqlite3.OperationalError(
                f"database is locked: another writer of this process held it for "
                f"{SQLITE_BUSY_TIMEOUT_MS // 1000} s"
            ),
        )
    try:
        yield
    finally:
        lock.release()


@contextmanager
def exclusive(engine: Engine, key: int) -> Iterator[Connection]:
    """A transaction that no other `exclusive(engine, key)` runs beside, on any process.

    It reads and writes knowing nobody changes what it read before it commits.
    PostgreSQL: the transaction-scoped advisory lock `key` (a signed 64-bit
    integer), taken first. SQLite: ``BEGIN IMMEDIATE``, the database's single
    write lock (taken before the first read, so the reads are current), whatever
    `key`. Commits when the block ends, rolls back when it raises.
    """
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
            yield connection
            connection.commit()
        return
    with sqlite_writer(engine), engine.connect() as connection:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
        yield connection
        connection.commit()
