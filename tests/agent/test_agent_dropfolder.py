"""The drop folder: whole lines only, offsets with the events, files by content, bad lines aside."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

from agenthelpers import FakeClock, agent_config, event, line

from agent.outbox import Outbox
from agent.sources.dropfolder import DropFolder, fingerprint
from agent.statedb import transaction
from casework.wire import parse_event


def folder(
    tmp_path: Path,
    state: sqlite3.Connection,
    outbox: Outbox,
    clock: FakeClock,
    **source: Any,
) -> DropFolder:
    config = agent_config(tmp_path, source=source)
    (entry,) = config.sources
    assert entry.kind == "dropfolder"
    return DropFolder(entry, state, outbox, config.departments, clock=clock)


def queued(outbox: Outbox, state: sqlite3.Connection) -> list[str]:
    return [r.event_id for r in outbox.take(state, 1_000_000)]


def drain(source: DropFolder) -> None:
    while source.poll():
        pass


def rename_in(drop: Path, name: str, text: str) -> None:
    """A writer following the protocol: a temporary name, then a rename."""
    temporary = drop / f".{name}.tmp"
    temporary.write_text(text, encoding="utf-8")
    os.rename(temporary, drop / name)


def test_a_half_written_line_waits_for_its_newline(
    tmp_path: Path, state: sqlite3.Connection, outbox: Outbox, clock: FakeClock
) -> None:
    source = folder(tmp_path, state, outbox, clock, finish_after_seconds=60)
    path = tmp_path / "drop" / "a.jsonl"
    whole, half = line(1), line(2)
    path.write_text(whole + half[:20], encoding="utf-8")
    drain(source)
    assert queued(outbox, state) == ["e-1"]
    with path.open("a", encoding="utf-8") as handle:
        handle.write(half[20:])
    drain(source)
    assert queued(outbox, state) == ["e-1", "e-2"]
    assert source.events_read == 2
    assert source.events_rejected == 0


def test_an_append_in_place_writer_is_read_as_it_grows_and_finished_when_quiet(
    tmp_path: Path, state: sqlite3.Connection, outbox: Outbox, clock: FakeClock
) -> None:
    source = folder(tmp_path, state, outbox, clock, finish_after_seconds=30)
    drop = tmp_path / "drop"
    path = drop / "log.jsonl"
    for n in range(1, 6):
        with path.open("a", encoding="utf-8") as handle:
            handle.write(line(n))
        drain(source)
        clock.advance(10)
    assert queued(outbox, state) == [f"e-{n}" for n in range(1, 6)]
    assert path.exists(), "a file still growing every 10 s is not finished"
    clock.advance(30)
    drain(source)
    assert not path.exists()
    assert (drop / "done" / "log.jsonl").read_text(encoding="utf-8").count("\n") == 5
    assert len(queued(outbox, state)) == 5


def test_renamed_in_files_are_read_whole_and_moved_to_done(
    tmp_path: Path, state: sqlite3.Connection, outbox: Outbox, clock: FakeClock
) -> None:
    source = folder(tmp_path, state, outbox, clock)
    drop = tmp_path / "drop"
    rename_in(drop, "b.jsonl", line(3) + line(4))
    rename_in(drop, "a.jsonl", line(1) + line(2))
    (drop / ".c.jsonl.tmp").write_text(line(5)[:30], encoding="utf-8")  # still being written
    drain(source)
    assert queued(outbox, state) == ["e-1", "e-2", "e-3", "e-4"]
    assert sorted(p.name for p in (drop / "done").iterdir()) == ["a.jsonl", "b.jsonl"]
    assert (drop / ".c.jsonl.tmp").exists()


def test_a_file_replaced_by_another_of_the_same_name_is_read_from_its_start(
    tmp_path: Path, state: sqlite3.Connection, outbox: Outbox, clock: FakeClock
) -> None:
    source = folder(tmp_path, state, outbox, clock, finish_after_seconds=60)
    drop = tmp_path / "drop"
    rename_in(drop, "daily.jsonl", line(1) + line(2) + line(3))
    drain(source)
    rename_in(drop, "daily.jsonl", line(7) + line(8))  # shorter than the offset reached
    drain(source)
    assert queued(outbox, state) == ["e-1", "e-2", "e-3", "e-7", "e-8"]


def test_the_same_file_dropped_again_is_not_read_twice(
    tmp_path: Path, state: sqlite3.Connection, outbox: Outbox, clock: FakeClock
) -> None:
    source = folder(tmp_path, state, outbox, clock)
    drop = tmp_path / "drop"
    rename_in(drop, "x.jsonl", line(1) + line(2))
    drain(source)
    rename_in(drop, "x-copy.jsonl", line(1) + line(2) + line(3))
    drain(source)
    assert queued(outbox, state) == ["e-1", "e-2", "e-3"]
    assert sorted(p.name for p in (drop / "done").iterdir()) == ["x-copy.jsonl", "x.jsonl"]


def test_offsets_survive_a_restart_with_the_events(
    tmp_path: Path, state: sqlite3.Connection, outbox: Outbox, clock: FakeClock
) -> None:
    drop = tmp_path / "drop"
    first = folder(tmp_path, state, outbox, clock, finish_after_seconds=60)
    path = drop / "a.jsonl"
    path.write_text(line(1) + line(2), encoding="utf-8")
    drain(first)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(line(3))
    second = folder(tmp_path, state, outbox, clock, finish_after_seconds=60)  # a new process
    drain(second)
    assert queued(outbox, state) == ["e-1", "e-2", "e-3"]


def test_a_burst_of_ten_thousand_files(
    tmp_path: Path, state: sqlite3.Connection, outbox: Outbox, clock: FakeClock
) -> None:
    source = folder(tmp_path, state, outbox, clock)
    drop = tmp_path / "drop"
    drop.mkdir(parents=True, exist_ok=True)
    for n in range(10_000):
        (drop / f"f{n:05d}.jsonl").write_text(line(n), encoding="utf-8")
    drain(source)
    ids = queued(outbox, state)
    assert len(ids) == len(set(ids)) == 10_000
    assert len(list((drop / "done").iterdir())) == 10_000
    assert [p.name for p in drop.iterdir() if p.is_file()] == []
    seqs = [r.seq for r in outbox.take(state, 20_000)]
    assert seqs == list(range(1, 10_001))


def test_bad_lines_go_to_rejected_with_line_and_reason_and_good_lines_go_on(
    tmp_path: Path, state: sqlite3.Connection, outbox: Outbox, clock: FakeClock
) -> None:
    source = folder(tmp_path, state, outbox, clock)
    drop = tmp_path / "drop"
    missing = event(3)
    del missing["case_id"]
    text = (
        line(1)
        + '{"event_id": "e-2", "case_id": \n'  # malformed JSON
        + json.dumps(missing)
        + "\n"
        + "\n"  # a blank line is skipped, not rejected
        + line(5, department="xxx")  # not this agent's
        + line(6, item="no-such-item")  # unknown item: forwarded, the server decides
        + line(7, type="approved")  # not an event type
        + line(8)
    )
    rename_in(drop, "mixed.jsonl", text)
    drain(source)
    assert queued(outbox, state) == ["e-1", "e-6", "e-8"]
    assert (source.events_read, source.events_rejected) == (3, 4)
    rejected = [
        json.loads(x)
        for x in (drop / "rejected" / "mixed.jsonl.rejected.jsonl").read_text("utf-8").splitlines()
    ]
    assert [(r["line"], r["reason"].split(":")[0]) for r in rejected] == [
        (2, "malformed JSON"),
        (3, "case_id"),
        (5, "department"),
        (7, "type"),
    ]
    assert "'xxx'" in rejected[2]["reason"]
    assert rejected[3]["text"] == line(7, type="approved").rstrip("\n")
    assert (drop / "done" / "mixed.jsonl").exists()


def test_duplicate_event_ids_are_forwarded_for_the_server_to_answer(
    tmp_path: Path, state: sqlite3.Connection, outbox: Outbox, clock: FakeClock
) -> None:
    source = folder(tmp_path, state, outbox, clock)
    rename_in(tmp_path / "drop", "d.jsonl", line(1) + line(1) + line(2))
    drain(source)
    assert queued(outbox, state) == ["e-1", "e-1", "e-2"]


def test_at_the_disk_cap_the_folder_pauses_and_drops_nothing(
    tmp_path: Path, state: sqlite3.Connection, clock: FakeClock
) -> None:
    box = Outbox(4096, clock=clock)
    box.load(state)
    source = folder(tmp_path, state, box, clock)
    drop = tmp_path / "drop"
    drop.mkdir(parents=True, exist_ok=True)
    for n in range(100):
        (drop / f"f{n:03d}.jsonl").write_text(line(n), encoding="utf-8")
    drain(source)
    assert box.paused()
    first = box.depth()
    assert first < 100
    drain(source)
    assert box.depth() == first, "a paused source reads nothing"
    delivered: list[str] = []
    while True:
        rows = box.take(state, 10)
        if not rows:
            drain(source)
            rows = box.take(state, 10)
            if not rows:
                break
        delivered += [r.event_id for r in rows]
        box.settle(state, rows)
        drain(source)
    assert sorted(delivered) == sorted(f"e-{n}" for n in range(100))


def test_csv_exports_with_a_column_mapping(
    tmp_path: Path, state: sqlite3.Connection, outbox: Outbox, clock: FakeClock
) -> None:
    mapping = {
        "columns": {
            "event_id": "流水号",
            "case_id": "办件编号",
            "item": "事项",
            "type": "类型",
            "at": "时间",
            "promised_days": "承诺",
        },
        "constants": {"department": "fgw"},
    }
    source = folder(tmp_path, state, outbox, clock, patterns=["*.csv"], csv=mapping)
    text = (
        "流水号,办件编号,事项,类型,时间,承诺\n"
        "r1,C1,fgw-001,accepted,2024-03-01 09:30:00,5\n"
        "r2,C1,fgw-001,completed,2024-03-02T10:00:00+08:00,\n"
        "r3,C2,fgw-001,accepted,2024-03-01 09:30:00,five\n"
    )
    rename_in(tmp_path / "drop", "export.csv", text)
    drain(source)
    rows = outbox.take(state, 10)
    assert [r.event_id for r in rows] == ["r1", "r2"]
    first = json.loads(rows[0].body)
    assert first["at"] == "2024-03-01T09:30:00+08:00"
    assert first["promised_days"] == 5
    assert source.events_rejected == 1
    rejected = (tmp_path / "drop" / "rejected" / "export.csv.rejected.jsonl").read_text("utf-8")
    assert json.loads(rejected)["line"] == 4
    assert "promised_days" in rejected


def test_the_fingerprint_is_the_first_line_and_waits_for_it(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    path.write_text('{"event_id": "e', encoding="utf-8")
    assert fingerprint(path) is None
    path.write_text(line(1), encoding="utf-8")
    first = fingerprint(path)
    path.write_text(line(1) + line(2), encoding="utf-8")
    assert fingerprint(path) == first is not None
    path.write_text("x" * 5000, encoding="utf-8")
    assert fingerprint(path) is not None


def test_a_file_rewritten_shorter_with_the_same_first_line_is_read_again(
    tmp_path: Path, state: sqlite3.Connection, outbox: Outbox, clock: FakeClock
) -> None:
    source = folder(tmp_path, state, outbox, clock, finish_after_seconds=60)
    path = tmp_path / "drop" / "daily.jsonl"
    path.write_text(line(1) + line(2) + line(3), encoding="utf-8")
    drain(source)
    path.write_text(line(1) + line(9), encoding="utf-8")  # truncated and rewritten in place
    drain(source)
    assert queued(outbox, state) == ["e-1", "e-2", "e-3", "e-1", "e-9"]
    again = folder(tmp_path, state, outbox, clock, finish_after_seconds=60)  # after a restart
    drain(again)
    assert len(queued(outbox, state)) == 5


def test_the_outbox_counters_never_go_below_zero(
    state: sqlite3.Connection, clock: FakeClock
) -> None:
    writer, reader = Outbox(1 << 20, clock=clock), Outbox(1 << 20, clock=clock)
    reader.load(state)  # sees nothing yet
    with transaction(state):
        queued_events = writer.put(state, "x", [parse_event(event(1))])
    writer.committed(queued_events)
    reader.settle(state, reader.take(state, 10))  # rows another process put there
    assert reader.depth() == 0
    assert reader.size_bytes() == 0


def test_files_read_long_ago_and_gone_are_forgotten(
    tmp_path: Path, state: sqlite3.Connection, outbox: Outbox, clock: FakeClock
) -> None:
    source = folder(tmp_path, state, outbox, clock, finish_after_seconds=60, forget_after_days=30)
    drop = tmp_path / "drop"
    rename_in(drop, "old.jsonl", line(1))
    (drop / "stays.jsonl").write_text(line(2) + '{"event_id": "half', encoding="utf-8")
    drain(source)
    clock.advance(120)
    drain(source)  # old.jsonl finished; stays.jsonl waits for its last line's newline
    assert not (drop / "old.jsonl").exists()

    def remembered() -> list[str]:
        return [n for (n,) in state.execute("SELECT name FROM dropfolder_files ORDER BY name")]

    clock.advance(29 * 86_400)
    drain(source)
    assert remembered() == ["old.jsonl", "stays.jsonl"]
    clock.advance(2 * 86_400)
    drain(source)
    assert remembered() == ["stays.jsonl"]  # still in the folder: kept
    rename_in(drop, "again.jsonl", line(1))  # the old file dropped again: read again
    drain(source)
    assert queued(outbox, state) == ["e-1", "e-2", "e-1"]
