"""Databases for the store's contract tests: every test runs on SQLite and on PostgreSQL.

SQLite is a file in the test's temporary folder. PostgreSQL is the server at
127.0.0.1:5432 (user postgres, trust authentication): the session creates a
database of its own, empties its schema after each test and drops it at the
end. Each test also checks that it left no connection open.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import QueuePool

from server.store.database import make_engine
from server.store.migrate import upgrade_engine

POSTGRES_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
MAINTENANCE_DATABASE = "test"


def _others_connected(connection_url: str, database: str) -> int:
    """How many client sessions other than this one are connected to `database` (an
    autovacuum worker visiting the database is no leak)."""
    engine = create_engine(connection_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            count: int = connection.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = :name AND pid <> pg_backend_pid()"
                    " AND backend_type = 'client backend'"
                ),
                {"name": database},
            ).scalar_one()
            return count
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def postgres_database(
    require_service: Callable[[str, str], NoReturn],
) -> Iterator[tuple[str, str]]:
    """(URL, name) of a database created for this test session, dropped at its end."""
    admin = create_engine(
        f"{POSTGRES_SERVER}/{MAINTENANCE_DATABASE}",
        isolation_level="AUTOCOMMIT",
        connect_args={"connect_timeout": 5},
    )
    name = f"esup_test_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        require_service("PostgreSQL", f"cannot create a database at {POSTGRES_SERVER}: {exc.orig}")
    try:
        yield f"{POSTGRES_SERVER}/{name}", name
    finally:
        with admin.connect() as connection:
            # Without FORCE: a connection some test leaked makes this fail loudly.
            connection.execute(text(f'DROP DATABASE "{name}"'))
        admin.dispose()


def _empty_schema(url: str) -> None:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
    finally:
        engine.dispose()


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database, SQLite or PostgreSQL; no connection may outlive the test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'esup.db'}"
        return
    url, name = request.getfixturevalue("postgres_database")
    try:
        yield url
        # A server process the test just stopped (and its projection process) may take
        # a moment to be gone from PostgreSQL's view; a leaked connection stays.
        deadline = time.monotonic() + 5
        while _others_connected(url, name) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _others_connected(url, name) == 0, "a test left a PostgreSQL connection open"
    finally:
        _empty_schema(url)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An Engine on the empty database; disposed after the test, which must return every
    connection it took."""
    engine = make_engine(database_url)
    try:
        yield engine
        pool = engine.pool
        assert isinstance(pool, QueuePool)
        assert pool.checkedout() == 0, "a connection was not returned to the pool"
    finally:
        engine.dispose()


@pytest.fixture
def migrated(engine: Engine) -> Engine:
    """The Engine, its database migrated to the newest revision."""
    upgrade_engine(engine)
    return engine
