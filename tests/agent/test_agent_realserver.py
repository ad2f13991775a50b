"""The agent process against a real `esup-server` process: files in, rows in the events table."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import serverprocess
from agenthelpers import line
from agentrun import AgentProcess, quarantined, served, stored_ids, write_config

from agent.cli import main


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
        time.sleep(0.1)


def command(*args: str) -> str:
    out = io.StringIO()
    assert main(list(args), out=out, err=out) == 0, out.getvalue()
    return out.getvalue()


def test_events_reach_the_server_and_refused_ones_become_dead_letters(tmp_path: Path) -> None:
    with served(tmp_path, departments=["fgw"]) as (server, token, database):
        # The agent may report for jyj, the token may not: the server refuses those.
        config = write_config(tmp_path, server.base_url, token, departments=["fgw", "jyj"])
        agent = AgentProcess(config)
        try:
            text = "".join(line(n) for n in range(1, 51))
            text += line(51, item="no-such-item") + line(52, department="jyj") + line(1)
            temporary = tmp_path / "drop" / ".batch.tmp"
            temporary.write_text(text, encoding="utf-8")
            temporary.rename(tmp_path / "drop" / "batch.jsonl")
            wait_for(lambda: len(stored_ids(database)) >= 50, "storing 50 events")
            wait_for(lambda: quarantined(database) == 2, "quarantining 2 events")
            wait_for(lambda: (tmp_path / "drop" / "done" / "batch.jsonl").exists(), "done/")
            assert agent.stop() == 0, agent.output()
        finally:
            agent.close()
        assert sorted(stored_ids(database)) == sorted(f"e-{n}" for n in range(1, 51))
    listing = command("dead-letters", "list", "--config", str(config), "--json")
    letters = [json.loads(x) for x in listing.splitlines()]
    assert [(d["event_id"], d["reason"].split(":")[0]) for d in letters] == [
        ("e-51", "item"),
        ("e-52", "department"),
    ]
    status = json.loads(command("status", "--config", str(config), "--json"))
    assert status["outbox"]["depth"] == 0
    assert status["dead_letters"] == 2
    assert status["sources"][0]["last_seq"] == 53


def test_the_agent_keeps_events_while_the_server_is_down_and_delivers_when_it_is_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = serverprocess.free_port()
    monkeypatch.setattr(serverprocess, "free_port", lambda: port)
    config = write_config(
        tmp_path,
        f"http://127.0.0.1:{port}",
        "placeholder",
        delivery="{batch_age_seconds: 0.2, max_backoff_seconds: 1, stop_flush_seconds: 2}",
    )
    for n in range(1, 21):
        (tmp_path / "drop" / f"f{n}.jsonl").write_text(line(n), encoding="utf-8")
    agent = AgentProcess(config)
    try:
        done = tmp_path / "drop" / "done"
        wait_for(lambda: done.is_dir() and len(list(done.iterdir())) == 20, "reading")
        status = json.loads(command("status", "--config", str(config), "--json"))
        assert status["outbox"]["depth"] == 20
        assert agent.stop() == 0  # stops within its flush bound although the server is down
        assert "not sent" in agent.output()
    finally:
        agent.close()
    with served(tmp_path) as (server, token, database):
        config = write_config(tmp_path, server.base_url, token)
        again = AgentProcess(config, "agent-again")
        try:
            wait_for(lambda: len(stored_ids(database)) == 20, "delivering after the restart")
            assert again.stop() == 0
        finally:
            again.close()
        assert sorted(stored_ids(database)) == sorted(f"e-{n}" for n in range(1, 21))
