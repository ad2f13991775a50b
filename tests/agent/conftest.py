"""Fixtures of the agent's tests: a state database, an outbox, a fake clock.

The real-server tests import `serverprocess` from tests/server, put on the path here.
"""

from __future__ import annotations

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
