"""Fixtures of the agent's tests: a state database, an outbox, a fake clock.

The real-server tests import `serverprocess` from tests/server, put on the path here.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))

from agenthelpers import FakeClock

from agent.outbox import Outbox
from agent.statedb import open_state_db


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def state(tmp_path: Path) -> Iterator[Any]:
    """A state database connection in the test's folder."""
    conn = open_state_db(tmp_path / "state" / "agent.db")
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def outbox(state: Any, clock: FakeClock) -> Outbox:
    box = Outbox(1 << 30, clock=clock)
    box.load(state)
    return box


POSTGRES_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"


@pytest.fixture(scope="session")
def postgres_exchange(require_service: Any) -> Iterator[str]:
    """The URL of a PostgreSQL database created for this session, dropped at its end."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    admin = create_engine(
        f"{POSTGRES_SERVER}/test", isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5}
    )
    name = f"esup_agent_test_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        require_service("PostgreSQL", f"cannot create a database at {POSTGRES_SERVER}: {exc.orig}")
    try:
        yield f"{POSTGRES_SERVER}/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def exchange_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty exchange database: a SQLite file, or the session's PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'exchange.db'}"
        return
    url: str = request.getfixturevalue("postgres_exchange")
    yield url
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text("DROP TABLE IF EXISTS case_events"))
    finally:
        engine.dispose()
