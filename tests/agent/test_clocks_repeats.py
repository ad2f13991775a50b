"""The live clocks hear the same event again (a dead letter replayed, a file rewritten
and read again) without a second flag or notice; and the sink the service hands the
core stores events for clocks that start later (no catalog yet)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from clockfakes import Events, FakeClock, core_connection, feed, make_clocks, opener

from agent import openstore
from agent.service import ClocksSink


def count(path: Path, sql: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(sql).fetchone()[0])
    finally:
        conn.close()


def test_the_same_events_again_raise_no_flag_twice_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    now = FakeClock("2024-03-13 09:00")  # the case is past its promised deadline
    event = Events()
    batch = (event("accepted", "2024-03-04 10:00"), event("step", "2024-03-05 10:00", step="x"))
    clocks = make_clocks(path, now)
    feed(clocks, path, *batch)
    clocks.process_due()
    assert clocks.flags_raised() == {("fgw", "warning"): 1, ("fgw", "yellow"): 1}
    for _ in range(2):  # replayed while running, and after a restart
        feed(clocks, path, *batch)
        assert clocks.process_due() == 1
        clocks = make_clocks(path, now)
        feed(clocks, path, *reversed(batch))
        clocks.process_due()
    assert clocks.flags_raised() == {("fgw", "warning"): 1, ("fgw", "yellow"): 1}
    assert count(path, "SELECT count(*) FROM clock_flags") == 2
    assert count(path, "SELECT count(*) FROM clock_notices") == 1
    assert count(path, "SELECT count(*) FROM clock_events") == 1
    assert clocks.open_cases() == {("fgw", "yellow"): 1}


def test_events_recorded_before_the_clocks_exist_are_evaluated_when_they_start(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    conn = opener(path)()
    conn.execute("BEGIN IMMEDIATE")
    openstore.create_tables(conn)
    conn.execute("COMMIT")
    conn.close()
    sink = ClocksSink()
    late = Events()("accepted", "2024-03-04 10:00")
    core = core_connection(path)
    sink.record(core, [late])
    core.commit()
    core.close()
    sink.committed([late])
    assert sink.open_cases() == {}
    sink.clocks = make_clocks(path, FakeClock("2024-03-20 09:00"))
    assert sink.clocks.process_due() == 1
    assert sink.flags_raised() == {("fgw", "warning"): 1, ("fgw", "yellow"): 1, ("fgw", "red"): 1}
    assert sink.open_cases() == {("fgw", "red"): 1}
