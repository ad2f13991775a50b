"""The runner in process: sources, sinks and delivery wired; stop flushes and loses nothing."""

from __future__ import annotations

import gzip
import io
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx
import pytest
from agenthelpers import agent_config, line

from agent.cli import main
from agent.runner import Agent
from casework.events import CaseEvent


class Sink:
    def __init__(self) -> None:
        self.committed_ids: list[str] = []

    def record(self, conn: sqlite3.Connection, events: Sequence[CaseEvent]) -> None:
        assert conn.in_transaction

    def committed(self, events: Sequence[CaseEvent]) -> None:
        self.committed_ids += [e.event_id for e in events]


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen"
        time.sleep(0.02)


@pytest.mark.parametrize("polling", [False, True], ids=["inotify", "polling"])
def test_files_flow_to_the_transport_and_sinks_and_stop_ends_the_run(
    tmp_path: Path, polling: bool
) -> None:
    received: list[str] = []
    lock = threading.Lock()

    def handler(request: httpx.Request) -> httpx.Response:
        ids = [json.loads(x)["event_id"] for x in gzip.decompress(request.content).splitlines()]
        with lock:
            received.extend(ids)
        results = [{"index": i, "status": "accepted"} for i in range(len(ids))]
        return httpx.Response(200, json={"results": results})

    # No rescan within the test: the files are seen through the notifications.
    config = agent_config(
        tmp_path,
        delivery={"batch_size": 50, "batch_age_seconds": 0.05},
        source={"polling": polling, "rescan_seconds": 600},
    )
    sink = Sink()
    agent = Agent(config, transport=httpx.MockTransport(handler), sinks=[sink])
    runner = threading.Thread(target=agent.run)
    runner.start()
    try:
        drop = tmp_path / "drop"
        for n in range(120):
            (drop / f"f{n:03d}.jsonl").write_text(line(n), encoding="utf-8")
        # The transport hears a batch before the agent settles it: wait for both.
        wait_for(
            lambda: len(received) == 120 and agent.outbox.depth() == 0, "delivering 120 events"
        )
        assert sorted(received) == sorted(f"e-{n}" for n in range(120))
        assert sorted(sink.committed_ids) == sorted(received)
        assert agent.sources[0].events_read == 120
        assert agent.sources[0].last_event_at is not None
        assert agent.delivery.counts["accepted"] == 120
        assert agent.outbox.depth() == 0
    finally:
        agent.stop()
        runner.join(timeout=30)
    assert not runner.is_alive()


def test_stop_with_the_server_refusing_keeps_the_events_for_the_next_start(
    tmp_path: Path,
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503)

    config = agent_config(
        tmp_path,
        delivery={"batch_age_seconds": 0, "max_backoff_seconds": 0.2, "stop_flush_seconds": 0.5},
    )
    agent = Agent(config, transport=httpx.MockTransport(handler))
    runner = threading.Thread(target=agent.run)
    runner.start()
    try:
        (tmp_path / "drop" / "a.jsonl").write_text(line(1) + line(2), encoding="utf-8")
        wait_for(lambda: agent.delivery.counts["failed_attempts"] >= 2, "two attempts")
    finally:
        agent.stop()
        runner.join(timeout=30)
    assert not runner.is_alive()
    config_file = tmp_path / "agent.yaml"
    config_file.write_text(
        json.dumps(config.model_dump(mode="json", exclude_none=True)), encoding="utf-8"
    )
    out = io.StringIO()
    assert main(["status", "--config", str(config_file)], out=out) == 0
    text = out.getvalue()
    assert "outbox: 2 event(s) waiting" in text
    assert "drop (dropfolder): last_seq=2" in text


def test_an_exchange_database_source_is_read_and_delivered(tmp_path: Path) -> None:
    exchange = tmp_path / "exchange.db"
    db = sqlite3.connect(exchange)
    db.execute("CREATE TABLE ev (id INTEGER, updated_at TEXT, no TEXT, at TEXT)")
    db.executemany(
        "INSERT INTO ev VALUES (?, ?, ?, ?)",
        [(n, f"2024-03-01 10:00:{n:02d}", f"x-{n}", "2024-03-01 09:30:00") for n in range(30)],
    )
    db.commit()
    db.close()
    received: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        ids = [json.loads(x)["event_id"] for x in gzip.decompress(request.content).splitlines()]
        received.extend(ids)
        return httpx.Response(
            200, json={"results": [{"index": i, "status": "accepted"} for i in range(len(ids))]}
        )

    source = {
        "kind": "exchange_db",
        "name": "frontdb",
        "url": f"sqlite:///{exchange}",
        "query": "SELECT * FROM ev",
        "columns": {"event_id": "no", "case_id": "no", "at": "at"},
        "constants": {"department": "fgw", "item": "fgw-001", "type": "accepted"},
        "page_size": 7,
        "poll_seconds": 0.1,
    }
    config = agent_config(tmp_path, delivery={"batch_age_seconds": 0.05}, sources=[source])
    agent = Agent(config, transport=httpx.MockTransport(handler))
    runner = threading.Thread(target=agent.run)
    runner.start()
    try:
        wait_for(lambda: agent.outbox.depth() == 0 and len(received) == 30, "delivering rows")
    finally:
        agent.stop()
        runner.join(timeout=30)
    assert received == [f"x-{n}" for n in range(30)]
    assert agent.sources[0].events_read == 30
