"""`esup-agent status` and `dead-letters list|replay` on a state database; a bad config."""

from __future__ import annotations

import io
import json
from pathlib import Path

from agenthelpers import agent_config, event

from agent.cli import main
from agent.outbox import Outbox
from agent.statedb import open_state_db, transaction
from casework.wire import parse_event


def run(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    status = main(list(args), out=out, err=out)
    return status, out.getvalue()


def test_dead_letters_are_listed_and_replayed_with_new_seq(tmp_path: Path) -> None:
    config = agent_config(tmp_path)
    path = tmp_path / "agent.yaml"
    path.write_text(json.dumps(config.model_dump(mode="json", exclude_none=True)), "utf-8")
    conn = open_state_db(config.state_db)
    box = Outbox(config.outbox_cap_bytes)
    with transaction(conn):
        queued = box.put(conn, "drop", [parse_event(event(n)) for n in (1, 2, 3)])
    box.committed(queued)
    rows = box.take(conn, 10)
    box.settle(conn, rows[:1], [(rows[1], "item: unknown item code 'fgw-001'", 200)])
    box.settle(conn, [], [(rows[2], "HTTP 400: bad", 400)])
    conn.close()

    status, text = run("dead-letters", "list", "--config", str(path))
    assert status == 0
    assert "#1 drop seq 2 event 'e-2': item: unknown item code 'fgw-001'" in text
    assert "2 dead letter(s)" in text

    status, text = run("dead-letters", "replay", "--config", str(path), "--id", "2")
    assert (status, text.strip()) == (0, "1 dead letter(s) put back into the outbox")
    status, text = run("status", "--config", str(path), "--json")
    report = json.loads(text)
    assert report["outbox"]["depth"] == 1
    assert report["dead_letters"] == 1
    assert report["sources"][0]["last_seq"] == 4

    status, text = run("dead-letters", "replay", "--config", str(path), "--all")
    assert text.strip() == "1 dead letter(s) put back into the outbox"
    conn = open_state_db(config.state_db)
    try:
        assert [(r.event_id, r.seq) for r in box.take(conn, 10)] == [("e-3", 4), ("e-2", 5)]
    finally:
        conn.close()


def test_a_bad_config_exits_2_naming_the_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("name: a\ndepartments: [fgw]\n", encoding="utf-8")
    status, text = run("status", "--config", str(path))
    assert status == 2
    assert f"{path}: server: this key is required" in text
