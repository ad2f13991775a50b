"""Live clocks: levels kept in the state database, flags raised exactly once, at the
instant the case reaches them; restarts, closes, unknown items and the wake loop.

The worked case: fgw-001 promises 5 and allows 10 working days (warning at 2
left). Accepted Monday 2024-03-04 10:00, its counted days are 5, 6, 7, 8, 11
March...: warning from 7 March 00:00, yellow from 12 March 00:00 (promised due
11 March), red from 19 March 00:00 (legal due 18 March).
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import pytest
from clockfakes import (
    Events,
    FakeClock,
    Wakes,
    clock,
    core_connection,
    deployment,
    feed,
    local,
    make_clocks,
)

from agent import openstore
from agent.liveclocks import MAX_WAIT_SECONDS
from casework.config import Deployment
from casework.events import CaseEvent


def db(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def flags(path: Path) -> list[tuple[object, ...]]:
    return rows(path, "SELECT case_id, level FROM clock_flags ORDER BY reached_at, level")


def notices(path: Path) -> list[dict[str, object]]:
    return [json.loads(str(b)) for (b,) in rows(path, "SELECT body FROM clock_notices ORDER BY id")]


def test_a_case_is_flagged_at_each_level_change_and_not_before(tmp_path: Path) -> None:
    now = FakeClock("2024-03-04 10:00")
    wakes = Wakes()
    clocks = make_clocks(db(tmp_path), now, wakes)
    event = Events()
    feed(clocks, db(tmp_path), event("accepted", "2024-03-04 10:00"))

    assert clocks.process_due() == 1
    assert clocks.open_cases() == {("fgw", "normal"): 1}
    assert clocks.next_change() == local("2024-03-07").timestamp()
    assert flags(db(tmp_path)) == []

    now.set("2024-03-06 23:59")  # a minute early: nothing is due
    assert clocks.process_due() == 0
    now.set("2024-03-07")
    assert clocks.process_due() == 1
    assert flags(db(tmp_path)) == [("C1", "warning")]
    assert clocks.open_cases() == {("fgw", "warning"): 1}
    assert clocks.next_change() == local("2024-03-12").timestamp()
    assert wakes.count == 1

    now.set("2024-03-12")
    clocks.process_due()
    now.set("2024-03-19 08:00")
    clocks.process_due()
    assert flags(db(tmp_path)) == [("C1", "warning"), ("C1", "yellow"), ("C1", "red")]
    assert clocks.flags_raised() == {("fgw", "warning"): 1, ("fgw", "yellow"): 1, ("fgw", "red"): 1}
    assert clocks.open_cases() == {("fgw", "red"): 1}
    assert clocks.next_change() != local("2024-03-19").timestamp()  # red is the last change
    sent = notices(db(tmp_path))
    assert [n["level"] for n in sent] == ["warning", "yellow", "red"]
    assert sent[1]["reached_at"] == "2024-03-12T00:00:00+08:00"
    assert sent[1]["case_id"] == "C1"
    assert sent[1]["department"] == "fgw"


def test_only_the_cases_due_are_evaluated(tmp_path: Path) -> None:
    now = FakeClock("2024-03-04 10:00")
    clocks = make_clocks(db(tmp_path), now)
    event = Events()
    # 30 cases of the 20-day item and one of the 5-day item: only the last is due on 7 March.
    batch = [event("accepted", "2024-03-04 10:00", f"J{i}", "jyj", "jyj-001") for i in range(30)]
    feed(clocks, db(tmp_path), *batch, event("accepted", "2024-03-04 10:00"))
    assert clocks.process_due() == 31
    now.set("2024-03-07 00:00")
    assert clocks.process_due() == 1
    assert clocks.open_cases() == {("jyj", "normal"): 30, ("fgw", "warning"): 1}


def test_a_case_already_late_when_it_arrives_gets_every_flag_in_one_notice(tmp_path: Path) -> None:
    now = FakeClock("2024-03-13 09:00")
    clocks = make_clocks(db(tmp_path), now)
    feed(clocks, db(tmp_path), Events()("accepted", "2024-03-04 10:00"))
    clocks.process_due()
    assert flags(db(tmp_path)) == [("C1", "warning"), ("C1", "yellow")]
    (notice,) = notices(db(tmp_path))
    assert notice["levels"] == ["warning", "yellow"]
    assert notice["level"] == "yellow"


def test_a_flag_is_not_raised_again_after_new_events_or_a_restart(tmp_path: Path) -> None:
    now = FakeClock("2024-03-07 09:00")
    clocks = make_clocks(db(tmp_path), now)
    event = Events()
    accepted = event("accepted", "2024-03-04 10:00")
    feed(clocks, db(tmp_path), accepted)
    clocks.process_due()
    feed(clocks, db(tmp_path), accepted)  # delivered again: evaluated again, flagged once
    assert clocks.process_due() == 1
    assert flags(db(tmp_path)) == [("C1", "warning")]

    again = make_clocks(db(tmp_path), now)  # a restart: state from the database alone
    assert again.open_cases() == {("fgw", "warning"): 1}
    assert again.flags_raised() == {("fgw", "warning"): 1}
    assert again.process_due() == 0
    now.set("2024-03-12 00:00")
    assert again.process_due() == 1
    assert flags(db(tmp_path)) == [("C1", "warning"), ("C1", "yellow")]
    assert len(notices(db(tmp_path))) == 2


def test_a_restart_catches_up_on_what_came_due_while_it_was_down(tmp_path: Path) -> None:
    now = FakeClock("2024-03-04 10:00")
    clocks = make_clocks(db(tmp_path), now)
    feed(clocks, db(tmp_path), Events()("accepted", "2024-03-04 10:00"))
    clocks.process_due()
    now.set("2024-03-20 09:00")
    again = make_clocks(db(tmp_path), now)
    assert again.wait_seconds() == 0
    again.process_due()
    assert [lvl for _, lvl in flags(db(tmp_path))] == ["warning", "yellow", "red"]


def test_a_closed_case_leaves_the_queue_and_does_not_come_back(tmp_path: Path) -> None:
    path = db(tmp_path)
    now = FakeClock("2024-03-05 09:00")
    clocks = make_clocks(path, now)
    event = Events()
    feed(clocks, path, event("accepted", "2024-03-04 10:00"), event("accepted", "2024-03-04", "C2"))
    clocks.process_due()
    done = event("completed", "2024-03-05 08:00", result="approved")
    feed(clocks, path, done)
    clocks.process_due()
    assert clocks.open_cases() == {("fgw", "normal"): 1}
    assert rows(path, "SELECT case_id FROM clock_cases") == [("C2",)]
    assert rows(path, "SELECT DISTINCT case_id FROM clock_events") == [("C2",)]
    # The completion delivered again, and a late step: the case stays closed.
    feed(clocks, path, done, event("step", "2024-03-04 12:00", step="late"))
    clocks.process_due()
    assert rows(path, "SELECT case_id FROM clock_cases") == [("C2",)]
    assert rows(path, "SELECT count(*) FROM clock_events WHERE case_id = 'C1'") == [(0,)]
    now.set("2024-03-30")
    clocks.process_due()
    assert ("C1", "warning") not in flags(path)


def test_closed_tombstones_are_pruned_after_the_retention(tmp_path: Path) -> None:
    path = db(tmp_path)
    now = FakeClock("2024-03-05 09:00")
    clocks = make_clocks(path, now)
    event = Events()
    feed(clocks, path, event("accepted", "2024-03-04"), event("completed", "2024-03-05 08:00"))
    clocks.process_due()
    assert rows(path, "SELECT case_id FROM clock_closed") == [("C1",)]
    now.set("2024-07-01")
    clocks.process_due()
    assert rows(path, "SELECT case_id FROM clock_closed") == []


def test_an_unknown_item_is_reported_not_guessed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    now = FakeClock("2024-03-20 09:00")
    clocks = make_clocks(db(tmp_path), now)
    event = Events()
    with caplog.at_level(logging.WARNING, logger="agent.liveclocks"):
        feed(clocks, db(tmp_path), event("accepted", "2024-03-04 10:00", item="fgw-999"))
        clocks.process_due()
    assert "'fgw-999'" in caplog.text
    assert clocks.unknown_items() == {"fgw": 1}
    assert clocks.open_cases() == {("fgw", "unknown_item"): 1}
    assert flags(db(tmp_path)) == []
    assert clocks.next_change() is None
    # More events of that case do not count it again.
    feed(clocks, db(tmp_path), event("extended", "2024-03-05", item="fgw-999", days=3))
    clocks.process_due()
    assert clocks.unknown_items() == {"fgw": 1}
    assert make_clocks(db(tmp_path), now).unknown_items() == {"fgw": 1}


def test_a_case_seen_before_its_acceptance_waits_then_runs(tmp_path: Path) -> None:
    now = FakeClock("2024-03-05 09:00")
    clocks = make_clocks(db(tmp_path), now)
    event = Events()
    feed(clocks, db(tmp_path), event("suspended", "2024-03-05 08:00", reason="testing", days=5))
    clocks.process_due()
    assert clocks.open_cases() == {("fgw", "pending"): 1}
    feed(clocks, db(tmp_path), event("accepted", "2024-03-04 10:00"))
    clocks.process_due()
    assert clocks.open_cases() == {("fgw", "suspended"): 1}


def test_workflow_steps_are_not_kept(tmp_path: Path) -> None:
    now = FakeClock("2024-03-05 09:00")
    clocks = make_clocks(db(tmp_path), now)
    event = Events()
    feed(clocks, db(tmp_path), event("accepted", "2024-03-04 10:00"))
    clocks.process_due()
    feed(clocks, db(tmp_path), event("step", "2024-03-05 08:00", step="审查", handler="张三"))
    assert rows(db(tmp_path), "SELECT count(*) FROM clock_events") == [(1,)]
    assert clocks.process_due() == 0


def test_stored_events_read_back_as_they_were() -> None:
    event = Events()
    originals = [
        event("accepted", "2024-03-04 10:00", promised_days=3, legal_days=9),
        event("suspended", "2024-03-05 10:00", reason="expert_review", days=5),
        event("extended", "2024-03-06 10:00", days=2),
        event("completed", "2024-03-07 10:00", result="approved"),
    ]
    for e in originals:
        back = openstore.decode(e.department, e.case_id, openstore.encode(e))
        assert back == e
        assert back.at.utcoffset() == e.at.utcoffset()


def test_a_sub_item_uses_its_own_limits(tmp_path: Path) -> None:
    now = FakeClock("2024-03-08 09:00")  # promised 3: due 7 March, yellow from 8 March
    clocks = make_clocks(db(tmp_path), now)
    feed(clocks, db(tmp_path), Events()("accepted", "2024-03-04 10:00", item="fgw-001-01"))
    clocks.process_due()
    assert clocks.open_cases() == {("fgw", "yellow"): 1}


def test_a_special_procedure_overrun_is_flagged(tmp_path: Path) -> None:
    path = db(tmp_path)
    now = FakeClock("2024-03-05 09:00")
    clocks = make_clocks(path, now)
    event = Events()
    feed(
        clocks,
        path,
        event("accepted", "2024-03-04 10:00"),
        event("suspended", "2024-03-04 15:00", reason="hearing", days=3),
    )
    clocks.process_due()
    assert clocks.open_cases() == {("fgw", "suspended"): 1}
    # Requested 3 working days (5, 6, 7 March): exceeded from 8 March 00:00.
    now.set("2024-03-08 00:00")
    clocks.process_due()
    assert ("C1", "procedure_overrun") in flags(path)
    assert clocks.flags_raised()[("fgw", "procedure_overrun")] == 1
    assert notices(path)[-1]["level"] == "procedure_overrun"


def test_record_writes_in_the_callers_transaction_only(tmp_path: Path) -> None:
    now = FakeClock("2024-03-05 09:00")
    clocks = make_clocks(db(tmp_path), now)
    conn = core_connection(db(tmp_path))
    clocks.record(conn, [Events()("accepted", "2024-03-04 10:00")])
    conn.rollback()  # the outbox transaction failed: the clocks saw nothing
    conn.close()
    assert rows(db(tmp_path), "SELECT count(*) FROM clock_events") == [(0,)]
    assert clocks.process_due() == 0


def test_the_loop_waits_until_the_next_change(tmp_path: Path) -> None:
    now = FakeClock("2024-03-06 23:00")
    clocks = make_clocks(db(tmp_path), now)
    assert clocks.wait_seconds() == 0  # housekeeping is due at start
    clocks.process_due()
    assert clocks.wait_seconds() == MAX_WAIT_SECONDS  # nothing open: wait the longest
    assert clocks.next_change() is None
    feed(clocks, db(tmp_path), Events()("accepted", "2024-03-04 10:00"))
    assert clocks.wait_seconds() == 0  # new events: at once
    clocks.process_due()
    now.set("2024-03-06 23:58")
    assert clocks.wait_seconds() == 120.0  # the warning at midnight


def test_the_thread_wakes_on_committed_events(tmp_path: Path) -> None:
    now = FakeClock("2024-03-20 09:00")
    wakes = Wakes()
    clocks = make_clocks(db(tmp_path), now, wakes)
    assert not clocks.is_running()
    clocks.start()
    try:
        assert clocks.is_running()
        clocks.process_due()  # whatever the thread does first, it then waits
        feed(clocks, db(tmp_path), Events()("accepted", "2024-03-04 10:00"))
        assert wakes.woken.wait(30), "the loop did not evaluate the new case"
    finally:
        clocks.stop()
    assert not clocks.is_running()
    assert [lvl for _, lvl in flags(db(tmp_path))] == ["warning", "yellow", "red"]


def test_a_new_catalog_reevaluates_every_open_case(tmp_path: Path) -> None:
    now = FakeClock("2024-03-05 09:00")
    clocks = make_clocks(db(tmp_path), now)
    event = Events()
    feed(
        clocks,
        db(tmp_path),
        event("accepted", "2024-03-04 10:00"),
        event("step", "2024-03-05", step="x"),
    )
    feed(clocks, db(tmp_path), event("accepted", "2024-03-01 10:00", "C2", item="fgw-777"))
    clocks.process_due()
    assert clocks.open_cases() == {("fgw", "normal"): 1, ("fgw", "unknown_item"): 1}
    # The catalog now knows fgw-777 (1 working day) and promises fgw-001 in 1 day.
    old = deployment()
    shorter = old.items[0].model_copy(update={"promised_days": 1})
    added = old.items[0].model_copy(update={"code": "fgw-777", "promised_days": 1, "sub_items": ()})
    new = Deployment(
        directory=old.directory,
        settings=old.settings,
        departments=old.departments,
        items=(shorter, added, *old.items[1:]),
        calendar=old.calendar,
    )  # built afresh: a model_copy would keep the old item index
    clocks.set_deployment(new, clock())
    assert clocks.process_due() == 2
    # C1 (due 5 March) is within its warning days; C2 (due 4 March) is past its promise.
    assert clocks.open_cases() == {("fgw", "warning"): 1, ("fgw", "yellow"): 1}


@runtime_checkable
class EventSink(Protocol):
    """The core's seam, as agreed: called for each batch of good events put into the outbox."""

    def record(self, conn: sqlite3.Connection, events: Sequence[CaseEvent]) -> None: ...

    def committed(self, events: Sequence[CaseEvent]) -> None: ...


def test_live_clocks_are_an_event_sink(tmp_path: Path) -> None:
    clocks = make_clocks(db(tmp_path), FakeClock("2024-03-05 09:00"))
    assert isinstance(clocks, EventSink)
    sink: EventSink = clocks
    sink.record(core_connection(db(tmp_path)), [])
    sink.committed([])


def test_a_case_that_cannot_be_evaluated_does_not_stop_the_others(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = db(tmp_path)
    now = FakeClock("2024-03-05 09:00")
    clocks = make_clocks(path, now)
    event = Events()
    feed(clocks, path, event("accepted", "2024-03-04 10:00"), event("accepted", "2024-03-04", "C2"))
    conn = sqlite3.connect(path)
    conn.execute("UPDATE clock_events SET line = 'not an event' WHERE case_id = 'C1'")
    conn.commit()
    conn.close()
    with caplog.at_level(logging.ERROR, logger="agent.liveclocks"):
        assert clocks.process_due() == 2
    assert "fgw/C1" in caplog.text
    assert clocks.open_cases() == {("fgw", "invalid"): 1, ("fgw", "normal"): 1}
    assert clocks.failures == 1
    assert clocks.next_change() is not None  # C2's warning; C1 is out of the queue
