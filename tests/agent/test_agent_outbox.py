"""The outbox: gap-free seq per source, sinks inside the transaction, the cap, dead letters."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest
from agenthelpers import FakeClock, event

from agent.outbox import Outbox
from agent.statedb import open_state_db, transaction
from casework.events import CaseEvent
from casework.wire import parse_event


def events(*numbers: int) -> list[CaseEvent]:
    return [parse_event(event(n)) for n in numbers]


def put(conn: sqlite3.Connection, box: Outbox, source: str, numbers: Sequence[int]) -> None:
    with transaction(conn):
        queued = box.put(conn, source, events(*numbers))
    box.committed(queued)


class RecordingSink:
    def __init__(self, fail: bool = False) -> None:
        self.recorded: list[list[str]] = []
        self.committed_ids: list[list[str]] = []
        self.fail = fail

    def record(self, conn: sqlite3.Connection, batch: Sequence[CaseEvent]) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS sink_rows (event_id TEXT)")
        conn.executemany("INSERT INTO sink_rows VALUES (?)", [(e.event_id,) for e in batch])
        self.recorded.append([e.event_id for e in batch])
        if self.fail:
            raise RuntimeError("sink failed")

    def committed(self, batch: Sequence[CaseEvent]) -> None:
        self.committed_ids.append([e.event_id for e in batch])


def test_seq_is_gap_free_per_source_and_survives_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    conn = open_state_db(path)
    box = Outbox(1 << 20)
    box.load(conn)
    put(conn, box, "a", [1, 2])
    put(conn, box, "b", [3])
    put(conn, box, "a", [4])
    conn.close()

    conn = open_state_db(path)
    again = Outbox(1 << 20)
    again.load(conn)
    put(conn, again, "a", [5])
    rows = again.take(conn, 100)
    assert [(r.source, r.seq, r.event_id) for r in rows] == [
        ("a", 1, "e-1"),
        ("a", 2, "e-2"),
        ("b", 1, "e-3"),
        ("a", 3, "e-4"),
        ("a", 4, "e-5"),
    ]
    body = json.loads(rows[2].body)
    assert (body["seq"], body["source"]) == (1, "b")
    assert again.depth() == 5
    assert again.size_bytes() == sum(len(r.body.encode()) for r in rows)
    conn.close()


def test_a_writers_own_seq_and_source_are_replaced(state: sqlite3.Connection) -> None:
    box = Outbox(1 << 20)
    with transaction(state):
        queued = box.put(state, "drop", [parse_event(event(1, seq=99, source="x"))])
    box.committed(queued)
    (row,) = box.take(state, 10)
    assert json.loads(row.body)["seq"] == 1
    assert json.loads(row.body)["source"] == "drop"


def test_sinks_record_inside_the_transaction_and_hear_the_commit(
    state: sqlite3.Connection,
) -> None:
    sink = RecordingSink()
    box = Outbox(1 << 20, sinks=[sink])
    put(state, box, "a", [1, 2])
    assert sink.recorded == [["e-1", "e-2"]] == sink.committed_ids
    assert state.execute("SELECT count(*) FROM sink_rows").fetchone() == (2,)


def test_a_failing_sink_rolls_the_whole_chunk_back(state: sqlite3.Connection) -> None:
    box = Outbox(1 << 20, sinks=[RecordingSink(fail=True)])
    with pytest.raises(RuntimeError, match="sink failed"):
        put(state, box, "a", [1])
    assert box.take(state, 10) == []
    assert state.execute("SELECT count(*) FROM source_seq").fetchone() == (0,)
    assert box.depth() == 0


def test_the_cap_pauses_and_delivery_makes_room(
    state: sqlite3.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="agent.outbox")
    box = Outbox(1024)
    put(state, box, "a", list(range(1, 6)))
    assert not box.paused()
    put(state, box, "a", list(range(6, 20)))
    assert box.paused()
    assert "outbox at its cap" in caplog.text
    assert box.size_bytes() >= box.cap_bytes() == 1024
    assert box.depth() == 19  # nothing dropped
    box.settle(state, box.take(state, 15))
    assert not box.paused()
    assert "the sources resume" in caplog.text
    assert box.depth() == 4


def test_dead_letters_keep_the_reason_and_replay_with_new_seq(
    state: sqlite3.Connection, clock: FakeClock
) -> None:
    box = Outbox(1 << 20, clock=clock)
    put(state, box, "a", [1, 2, 3])
    first, second, third = box.take(state, 10)
    box.settle(state, [first], [(second, "item: unknown item code 'x'", 200), (third, "r", 400)])
    assert box.depth() == 0
    assert box.dead_letters() == 2
    letters = box.list_dead(state)
    assert [(d.event_id, d.seq, d.reason, d.status) for d in letters] == [
        ("e-2", 2, "item: unknown item code 'x'", 200),
        ("e-3", 3, "r", 400),
    ]
    assert box.replay(state, [letters[1].id]) == 1
    assert box.dead_letters() == 1
    (row,) = box.take(state, 10)
    assert (row.event_id, row.seq) == ("e-3", 4)
    assert box.replay(state) == 1
    assert [r.seq for r in box.take(state, 10)] == [4, 5]
    assert box.dead_letters() == 0


def test_the_stored_line_is_the_text_read_with_seq_and_source_winning(
    state: sqlite3.Connection,
) -> None:
    box = Outbox(1 << 20)
    # "seq": null in the text, and the Chinese note as \u escapes.
    text = json.dumps(event(1, seq=None, note="保留"), ensure_ascii=True)
    with transaction(state):
        queued = box.put(state, "drop", [parse_event(json.loads(text))], [text])
    box.committed(queued)
    (row,) = box.take(state, 10)
    assert row.body.startswith(text[:-1])
    stored = parse_event(json.loads(row.body))
    assert (stored.seq, stored.extra["source"], stored.extra["note"]) == (1, "drop", "保留")
