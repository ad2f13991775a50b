"""Benchmark of the agent's drop folder: files in, events in the outbox, beside raw storage.

Writes seeded events as JSON Lines files (`--files` files, `--events` in all)
into a fresh drop folder, then times `DropFolder.poll` until every line is in
the outbox of a fresh state database: reading, validating every line against
the wire format, stamping seq and source, the outbox insert and the offset
update in one transaction per chunk, and moving the finished files to done/.
The baseline reads the same files line by line and stores the raw lines with
``sqlite3`` ``executemany`` in a table of the same shape, in a database with
the same settings (WAL, synchronous=FULL), one transaction per same-sized
chunk: the storage without the agent's work. Both are measured in the same run.

    python bench/agent_dropfolder.py [--events N] [--files F] [--seed S] [--repeat R] [--strict]

Rates are per CPU second of the one process (``time.process_time()``), as in
the other benchmarks: the machines are shared, and wall time moves with the
neighbours' load. Wall seconds, which include the fsync of each commit, are
shown beside.
Exit status: 2 when the outbox does not hold every event exactly once, 1 when
the target is missed and ``--strict`` is given, else 0. See
docs/benchmarks.md, "Agent".
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from scratch import positive_int, verdict

from agent.config import DropFolderConfig
from agent.outbox import Outbox
from agent.sources.dropfolder import CHUNK_BYTES, DropFolder
from agent.statedb import open_state_db, transaction

TARGET_RATE = 20_000  # events/s into the outbox


def event_lines(count: int, seed: int) -> list[str]:
    """Accepted and completed events of cases of department fgw, as JSON lines."""
    chance = random.Random(seed)
    lines = []
    for n in range(count):
        case = n // 2
        kind = "accepted" if n % 2 == 0 else "completed"
        event: dict[str, object] = {
            "event_id": f"fgw-{n:08d}",
            "case_id": f"330100-2026-{case:08d}",
            "department": "fgw",
            "item": f"fgw-{chance.randrange(1, 5):03d}",
            "type": kind,
            "at": f"2026-03-{chance.randrange(1, 28):02d}T{chance.randrange(8, 18):02d}:30:00"
            "+08:00",
        }
        if kind == "completed":
            event["result"] = "approved"
        else:
            event["promised_days"] = chance.randrange(1, 20)
        lines.append(json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n")
    return lines


def write_files(folder: Path, lines: list[str], files: int) -> None:
    folder.mkdir(parents=True)
    per = -(-len(lines) // files)
    for index in range(files):
        part = lines[index * per : (index + 1) * per]
        if part:
            (folder / f"export-{index:05d}.jsonl").write_text("".join(part), encoding="utf-8")


def run_agent(work: Path, lines: list[str], files: int) -> tuple[float, float, int]:
    """(wall s, CPU s, distinct event ids in the outbox) of reading every file."""
    drop = work / "agent-drop"
    write_files(drop, lines, files)
    conn = open_state_db(work / "agent-state" / "agent.db")
    outbox = Outbox(1 << 40)
    config = DropFolderConfig(kind="dropfolder", name="bench", path=drop, finish_after_seconds=0)
    source = DropFolder(config, conn, outbox, ["fgw"])
    wall, cpu = time.perf_counter(), time.process_time()
    while source.poll():
        pass
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    (stored,) = conn.execute("SELECT count(DISTINCT event_id) FROM outbox").fetchone()
    (total,) = conn.execute("SELECT count(*) FROM outbox").fetchone()
    conn.close()
    shutil.rmtree(drop)
    shutil.rmtree(work / "agent-state")
    return wall, cpu, stored if stored == total else -1


def store(conn: sqlite3.Connection, rows: list[tuple[str, int, str, str, int, float]]) -> None:
    with transaction(conn):
        conn.executemany(
            "INSERT INTO outbox (source, seq, event_id, body, size, queued_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )


def run_baseline(work: Path, lines: list[str], files: int) -> tuple[float, float, int]:
    """The same files' lines stored raw, chunk by chunk, in the same kind of database."""
    drop = work / "raw-drop"
    write_files(drop, lines, files)
    conn = open_state_db(work / "raw-state" / "raw.db")
    wall, cpu = time.perf_counter(), time.process_time()
    rows: list[tuple[str, int, str, str, int, float]] = []
    size = 0
    seq = 0
    for path in sorted(drop.iterdir()):
        with path.open("rb") as handle:
            for raw in handle:
                text = raw.decode()
                seq += 1
                rows.append(("bench", seq, text[13:27], text, len(raw), 0.0))
                size += len(raw)
                if size >= CHUNK_BYTES:
                    store(conn, rows)
                    rows, size = [], 0
    store(conn, rows)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    (stored,) = conn.execute("SELECT count(DISTINCT event_id) FROM outbox").fetchone()
    conn.close()
    shutil.rmtree(drop)
    shutil.rmtree(work / "raw-state")
    return wall, cpu, stored


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=positive_int, default=100_000)
    parser.add_argument("--files", type=positive_int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=positive_int, default=3)
    parser.add_argument("--strict", action="store_true")
    args = parser.parse_args(argv)
    lines = event_lines(args.events, args.seed)
    best: dict[str, tuple[float, float, int]] = {}
    with tempfile.TemporaryDirectory(prefix="esup-bench-agent-") as folder:
        work = Path(folder)
        for _ in range(args.repeat):
            for name, run in (("agent", run_agent), ("baseline", run_baseline)):
                result = run(work, lines, args.files)
                if name not in best or result[1] < best[name][1]:
                    best[name] = result
    agent, raw = best["agent"], best["baseline"]
    if agent[2] != args.events or raw[2] != args.events:
        print(
            f"check failed: the outbox holds {agent[2]} distinct events, the baseline"
            f" {raw[2]}, of {args.events} written (-1: an event twice)"
        )
        return 2
    print(f"{args.events:,} events in {args.files} files, best of {args.repeat}")
    print(f"{'implementation':<42} {'wall s':>8} {'CPU s':>8} {'events/CPU s':>12} {'x base':>7}")
    for label, (wall, cpu, _) in (
        ("agent drop folder into the outbox", agent),
        ("baseline: raw lines, sqlite3 executemany", raw),
    ):
        print(
            f"{label:<42} {wall:>8.2f} {cpu:>8.2f} {args.events / cpu:>12,.0f} {raw[1] / cpu:>7.2f}"
        )
    rate = args.events / agent[1]
    ok = verdict(f"drop folder >= {TARGET_RATE:,} events/s", rate >= TARGET_RATE, f"{rate:,.0f}")
    return 1 if args.strict and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
