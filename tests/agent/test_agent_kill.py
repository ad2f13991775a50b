"""The kill test: an agent killed with SIGKILL at random moments while it reads events from
files, restarted each time, leaves the real server with exactly those events.

The suite runs 20,000 events; ESUP_KILL_EVENTS=100000 runs the full size of the issue.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from pathlib import Path

from agentrun import AgentProcess, gaps, quarantined, served, stored_ids, write_config

from agent.outbox import Outbox
from agent.statedb import open_state_db

EVENTS = int(os.environ.get("ESUP_KILL_EVENTS", "20000"))
PER_FILE = 1000


def event_line(number: int) -> str:
    return (
        json.dumps(
            {
                "event_id": f"k-{number}",
                "case_id": f"K-{number // 3}",
                "department": "fgw",
                "item": "fgw-001",
                "type": "accepted",
                "at": "2024-03-01T09:30:00+08:00",
            }
        )
        + "\n"
    )


def write_files(drop: Path, chance: random.Random) -> None:
    """Every fourth file appended in place in pieces (half lines included); the others
    written under a temporary name and renamed in."""
    for first in range(0, EVENTS, PER_FILE):
        text = "".join(event_line(n) for n in range(first, min(first + PER_FILE, EVENTS)))
        name = f"export-{first // PER_FILE:04d}.jsonl"
        if (first // PER_FILE) % 4 == 3:
            with (drop / name).open("a", encoding="utf-8") as handle:
                position = 0
                while position < len(text):
                    step = chance.randrange(1, 40_000)
                    handle.write(text[position : position + step])
                    handle.flush()
                    position += step
                    time.sleep(chance.uniform(0, 0.02))
        else:
            temporary = drop / f".{name}.tmp"
            temporary.write_text(text, encoding="utf-8")
            temporary.rename(drop / name)
        time.sleep(chance.uniform(0, 0.05))


def test_sigkill_at_random_moments_loses_no_event_and_doubles_none(tmp_path: Path) -> None:
    seed = random.randrange(2**32)
    chance = random.Random(seed)
    with served(tmp_path) as (server, token, database):
        config = write_config(
            tmp_path,
            server.base_url,
            token,
            delivery="{batch_size: 500, batch_age_seconds: 0.2, max_backoff_seconds: 1}",
            finish_after=3,
        )
        drop = tmp_path / "drop"
        writer = threading.Thread(target=write_files, args=(drop, chance))
        writer.start()
        kills = 0
        deadline = time.monotonic() + 60 + EVENTS / 200
        try:
            while writer.is_alive() or kills < 5:  # at least five restarts, whatever the pace
                agent = AgentProcess(config)
                try:
                    time.sleep(chance.uniform(0.3, 2.0))
                    assert agent.alive(), agent.output()
                    agent.kill()
                    kills += 1
                finally:
                    agent.close()
                assert time.monotonic() < deadline, f"too slow after {kills} kills (seed {seed})"
        finally:
            writer.join()
        agent = AgentProcess(config, "agent-last")
        try:
            while len(stored_ids(database)) < EVENTS or any(p.is_file() for p in drop.iterdir()):
                assert time.monotonic() < deadline, f"not all delivered (seed {seed})"
                assert agent.alive(), agent.output()
                time.sleep(0.2)
            assert agent.stop() == 0
        finally:
            agent.close()
        stored = stored_ids(database)
        assert len(stored) == len(set(stored)) == EVENTS, seed
        assert set(stored) == {f"k-{n}" for n in range(EVENTS)}, seed
        assert quarantined(database) == 0, seed
        assert gaps(database) == 0, seed
    assert kills >= 5
    assert list((drop / "rejected").iterdir()) == []
    assert len(list((drop / "done").iterdir())) == -(-EVENTS // PER_FILE)
    conn = open_state_db(tmp_path / "state" / "agent.db")
    try:
        outbox = Outbox(1 << 30)
        outbox.load(conn)
        assert outbox.depth() == 0
        assert outbox.dead_letters() == 0
        (last,) = conn.execute("SELECT last_seq FROM source_seq").fetchone()
        assert last == EVENTS, "every line got exactly one seq"
    finally:
        conn.close()
