"""Benchmark of the agent's latency: a file written → its events stored on a real server.

Starts a real ``esup-server run`` (SQLite) and a real ``esup-agent run`` with
one drop folder and the delivery settings of config/agent.yaml (batches of
up to 500, leaving once the oldest event waited 1 s). A writer drops a file
of 10 events every 100 ms (`--rate` events/s) for `--seconds`, as the file
protocol says: a temporary name, then a rename. The latency of an event is
the server's ``received_at`` (the commit of its batch) minus the instant its
file was renamed in. The baseline, in the same run and on the same server,
posts the same number of events straight to ``POST /api/v1/events`` at the
same pace, one request per 10 events: the server's own share of the latency.

    python bench/agent_latency.py [--seconds S] [--rate R] [--batch-age A] [--strict]

Exit status: 2 when an event is missing on the server, 1 when the target is
missed and ``--strict`` is given, else 0. See docs/benchmarks.md, "Agent".
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

import httpx
from ingest import running_server
from scratch import positive_int, verdict
from sqlalchemy import select

from server.store.database import make_engine
from server.store.migrate import upgrade_engine
from server.store.tables import events
from server.store.tokens import TokenStore

TARGET_P99 = 2.0  # seconds
PER_FILE = 10


def event_line(prefix: str, number: int) -> str:
    return json.dumps(
        {
            "event_id": f"{prefix}-{number}",
            "case_id": f"{prefix}-C-{number}",
            "department": "fgw",
            "item": "fgw-001",
            "type": "accepted",
            "at": "2026-03-02T09:30:00+08:00",
        }
    )


def agent_command() -> list[str]:
    script = Path(sys.executable).parent / "esup-agent"
    return [str(script)] if script.exists() else [sys.executable, "-m", "agent.cli"]


def received(database: str, prefix: str) -> dict[str, float]:
    engine = make_engine(database)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(events.c.event_id, events.c.received_at).where(
                    events.c.event_id.like(f"{prefix}-%")
                )
            )
            return {event_id: at.timestamp() for event_id, at in rows}
    finally:
        engine.dispose()


def wait_stored(database: str, prefix: str, count: int, timeout: float = 120) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while True:
        got = received(database, prefix)
        if len(got) >= count or time.monotonic() > deadline:
            return got
        time.sleep(0.5)


def through_agent(
    folder: Path, base: str, token: str, total: int, pace: float, age: float
) -> tuple[dict[str, float], subprocess.Popen[bytes], IO[str]]:
    """Start an agent, drop the files at `pace` seconds an event; (rename instants, agent, log)."""
    drop = folder / "drop"
    drop.mkdir()
    config = folder / "agent.yaml"
    config.write_text(
        f"name: bench-agent\ndepartments: [fgw]\nserver: {{url: '{base}', token: '{token}'}}\n"
        "state_dir: agent-state\n"
        f"delivery: {{batch_size: 500, batch_age_seconds: {age}}}\n"
        "sources:\n  - {kind: dropfolder, name: drop, path: drop, finish_after_seconds: 0}\n",
        encoding="utf-8",
    )
    log = (folder / "agent.log").open("w", encoding="utf-8")
    agent = subprocess.Popen(
        [*agent_command(), "run", "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=folder,
    )
    written: dict[str, float] = {}
    time.sleep(2)  # the agent's start
    start = time.monotonic()
    for index in range(0, total, PER_FILE):
        lines = [event_line("a", n) for n in range(index, min(index + PER_FILE, total))]
        temporary = drop / f".f{index}.tmp"
        temporary.write_text("\n".join(lines) + "\n", encoding="utf-8")
        os.rename(temporary, drop / f"f{index:07d}.jsonl")
        now = time.time()
        written.update((f"a-{n}", now) for n in range(index, index + len(lines)))
        time.sleep(max(0.0, start + (index + PER_FILE) * pace - time.monotonic()))
    return written, agent, log


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=positive_int, default=30)
    parser.add_argument("--rate", type=positive_int, default=100, help="events per second")
    parser.add_argument(
        "--batch-age", type=float, default=1.0, help="the agent's batch_age_seconds"
    )
    parser.add_argument("--strict", action="store_true")
    args = parser.parse_args(argv)
    total = args.seconds * args.rate
    pace = 1.0 / args.rate
    with tempfile.TemporaryDirectory(prefix="esup-bench-latency-") as name:
        folder = Path(name)
        database = f"sqlite:///{folder / 'server.db'}"
        engine = make_engine(database)
        try:
            upgrade_engine(engine)
            token = TokenStore(engine).create("bench-agent", ["fgw"])
        finally:
            engine.dispose()
        with running_server(folder, database, True) as (base, _pid):
            written, agent, log = through_agent(folder, base, token, total, pace, args.batch_age)
            try:
                stored = wait_stored(database, "a", total)
            finally:
                agent.terminate()
                agent.wait(timeout=30)
                log.close()
            posted: dict[str, float] = {}
            with httpx.Client(
                base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30
            ) as client:
                start = time.monotonic()
                for index in range(0, total, PER_FILE):
                    numbers = range(index, min(index + PER_FILE, total))
                    body = "\n".join(event_line("b", n) for n in numbers) + "\n"
                    now = time.time()
                    client.post(
                        "/api/v1/events",
                        content=body,
                        headers={"Content-Type": "application/x-ndjson"},
                    ).raise_for_status()
                    posted.update((f"b-{n}", now) for n in numbers)
                    time.sleep(max(0.0, start + (index + PER_FILE) * pace - time.monotonic()))
            direct = wait_stored(database, "b", total)
    if len(stored) != total or len(direct) != total:
        print(f"check failed: {len(stored)} of {total} agent events stored, {len(direct)} direct")
        return 2
    rows = []
    for label, sent, got in (
        ("file → agent → server (stored)", written, stored),
        ("baseline: POST straight to the server", posted, direct),
    ):
        latencies = sorted(got[k] - sent[k] for k in sent)
        q = statistics.quantiles(latencies, n=100)
        rows.append((label, q[49], q[98], latencies[-1]))
    print(f"{total:,} events at {args.rate}/s, {PER_FILE} per file or request")
    print(f"{'path':<40} {'p50 s':>7} {'p99 s':>7} {'max s':>7}")
    for label, p50, p99, worst in rows:
        print(f"{label:<40} {p50:>7.3f} {p99:>7.3f} {worst:>7.3f}")
    p99 = rows[0][2]
    ok = verdict(f"agent p99 <= {TARGET_P99} s", p99 <= TARGET_P99, f"{p99:.3f} s")
    return 1 if args.strict and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
