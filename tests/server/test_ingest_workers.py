"""Ingest in worker processes (``ingest_processes``), on SQLite and PostgreSQL: the same
answers and the same stored rows as ingest in the server process, config/ followed on
reload, and a worker that dies costs one request a 503, not the server."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from casework.configfiles import load_config
from server.app import create_app
from server.ingest import CaseKey
from server.settings import ServerSettings
from server.store.tokens import TokenStore

CONFIG = Path(__file__).resolve().parents[2] / "config"
TABLES = {
    "events": "SELECT department, event_id, case_id, item, type, at, seq, source_agent, body"
    " FROM events ORDER BY id",
    "quarantine": "SELECT agent, reason, body FROM quarantine ORDER BY id",
    "seq_gaps": "SELECT agent, source, expected_seq, got_seq FROM seq_gaps ORDER BY id",
    "streams": "SELECT agent, source, last_seq FROM streams ORDER BY agent, source",
    "projection_queue": "SELECT department, case_id, version FROM projection_queue"
    " ORDER BY department, case_id",
}


def event(n: int, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": f"e-{n}",
        "case_id": f"C-{n % 7}",
        "department": "fgw",
        "item": "fgw-001",
        "type": "accepted",
        "at": "2024-03-01T09:30:00+08:00",
        "seq": n,
        "source": "front",
    }
    base.update(fields)
    return base


def ndjson(*events: dict[str, Any]) -> bytes:
    return "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events).encode()


def requests() -> list[tuple[bytes, dict[str, str]]]:
    """Bodies and headers covering what a batch can be: good, duplicate, each kind of bad
    event, a JSON array, gzip, a gap in `seq`, and bodies refused as a whole."""
    later = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    mixed = [
        event(1),
        event(2, type="completed", at="2024-03-02T10:00:00+08:00", case_id="C-1"),
        event(3, department="zrzy", item="zrzy-002"),  # outside the token's scope
        event(4, item="nope-001"),
        event(5, at=later),  # beyond the clock skew
        event(6, at="2024-03-01T09:30:00"),  # no offset
        event(7, type="opened"),
        event(8, event_id="e-1"),  # a duplicate within the batch
        event(9, department="jyj", item="rx-zx"),
        event(10, source="x\u0000y", seq=None),
    ]
    array = json.dumps([event(n) for n in range(10, 20)]).encode()
    plain = {"content-type": "application/x-ndjson"}
    return [
        (ndjson(*mixed), plain),
        (ndjson(*mixed), plain),  # resent: all duplicates and the same rejections
        (array, {"content-type": "application/json"}),
        (
            gzip.compress(ndjson(*[event(n) for n in range(30, 40)])),
            plain | {"content-encoding": "gzip"},
        ),
        (ndjson(event(45), event(46)), plain),  # seq jumps from 39 to 45
        (b"[{]", {"content-type": "application/json"}),
        (gzip.compress(b"x" * 70_000), plain | {"content-encoding": "gzip"}),  # 413 once unzipped
        (b"\x1f\x8b not gzip", plain | {"content-encoding": "gzip"}),
    ]


def timeless(value: Any) -> Any:
    """`value` with the server's clock left out of the reason of an event stamped too late."""
    if isinstance(value, str) and value.startswith("at: ") and "server's clock" in value:
        return value.partition(" (")[0]
    if isinstance(value, dict):
        return {k: timeless(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(timeless(v) for v in value)
    return value


def contents(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as connection:
        return {
            name: [timeless(tuple(row)) for row in connection.exec_driver_sql(sql)]
            for name, sql in TABLES.items()
        }


def emptied(engine: Engine) -> None:
    with engine.begin() as connection:
        for name in TABLES:
            connection.execute(text(f"DELETE FROM {name}"))


@contextmanager
def client_of(
    engine: Engine, processes: int, config_dir: Path = CONFIG
) -> Iterator[tuple[TestClient, list[set[CaseKey]]]]:
    heard: list[set[CaseKey]] = []
    settings = ServerSettings(
        database=engine.url.render_as_string(hide_password=False),
        config_dir=config_dir,
        max_body_bytes=64 * 1024,
        ingest_processes=processes,
    )
    app = create_app(
        settings, engine=engine, deployment=load_config(config_dir), on_accepted=heard.append
    )
    with TestClient(app) as client:
        yield client, heard


def test_workers_answer_and_store_as_the_server_process_does(migrated: Engine) -> None:
    token = TokenStore(migrated).create("agent-1", ["fgw", "jyj"])
    auth = {"authorization": f"Bearer {token}"}
    answers: dict[int, list[tuple[int, Any]]] = {}
    stored: dict[int, dict[str, list[tuple[Any, ...]]]] = {}
    heard_by: dict[int, list[set[CaseKey]]] = {}
    sent = requests()
    for processes in (0, 2):
        emptied(migrated)
        with client_of(migrated, processes) as (client, heard):
            if processes:
                assert len(client.app.state.ingest.workers.pids()) == processes  # type: ignore[attr-defined]
            answers[processes] = []
            for body, headers in sent:
                response = client.post("/api/v1/events", content=body, headers=headers | auth)
                answers[processes].append((response.status_code, timeless(response.json())))
        stored[processes] = contents(migrated)
        heard_by[processes] = heard
    assert answers[2] == answers[0]
    assert [status for status, _ in answers[0]] == [200] * 5 + [400, 413, 400]
    first = answers[0][0][1]
    assert (first["accepted"], first["duplicate"], first["rejected"]) == (3, 1, 6)
    assert stored[2] == stored[0]
    assert len(stored[0]["events"]) == 3 + 10 + 10 + 2
    assert [row[2:] for row in stored[0]["seq_gaps"]] == [(6, 8), (20, 30), (40, 45)]
    assert heard_by[2] == heard_by[0]
    assert heard_by[0][0] == {("fgw", "C-1"), ("jyj", "C-2")}


def test_a_reload_starts_workers_that_read_config_anew(migrated: Engine, tmp_path: Path) -> None:
    config_dir = tmp_path / "config"
    shutil.copytree(CONFIG, config_dir)
    token = TokenStore(migrated).create("agent-1", ["fgw"])
    auth = {"authorization": f"Bearer {token}"}
    body = ndjson(event(1, item="fgw-new"))
    with client_of(migrated, 1, config_dir) as (client, _):
        refused = client.post("/api/v1/events", content=body, headers=auth).json()
        assert refused["results"][0]["reason"] == "item: unknown item code 'fgw-new'"
        before = client.app.state.ingest.workers.pids()  # type: ignore[attr-defined]
        with (config_dir / "catalog.yaml").open("a", encoding="utf-8") as catalog:
            catalog.write(
                "- code: fgw-new\n  name: 新事项\n  department: fgw\n  kind: approval\n"
                "  promised_days: 5\n  legal_days: 20\n"
            )
        client.app.state.config.replace(load_config(config_dir))  # type: ignore[attr-defined]
        accepted = client.post("/api/v1/events", content=body, headers=auth).json()
        assert accepted["accepted"] == 1, accepted
        workers = client.app.state.ingest.workers  # type: ignore[attr-defined]
        assert workers.pids() != before

        # A request that took the old pool just before a reload shut it down goes to the new.
        class ShutDown:
            def submit(self, *_: Any) -> None:
                workers._pool = new
                raise RuntimeError("cannot schedule new futures after shutdown")

        new, workers._pool = workers._pool, ShutDown()
        again = client.post("/api/v1/events", content=body, headers=auth)
        assert again.status_code == 200
        assert again.json()["duplicate"] == 1

        # New workers that cannot start (config/ broken meanwhile): ingest goes on in the
        # server process, with the configuration now in service, not the one before.
        (config_dir / "catalog.yaml").write_text("items: [{code: 1}]\n", encoding="utf-8")
        client.app.state.config.replace(load_config(CONFIG))  # type: ignore[attr-defined]
        assert client.app.state.ingest.workers is None  # type: ignore[attr-defined]
        moved = client.post(
            "/api/v1/events", content=ndjson(event(2, item="fgw-new")), headers=auth
        )
        assert moved.json()["results"][0]["reason"] == "item: unknown item code 'fgw-new'"
        fine = client.post("/api/v1/events", content=ndjson(event(3)), headers=auth)
        assert fine.json()["accepted"] == 1


def test_a_worker_that_dies_costs_one_request_a_503(migrated: Engine) -> None:
    token = TokenStore(migrated).create("agent-1", ["fgw"])
    auth = {"authorization": f"Bearer {token}"}
    with client_of(migrated, 1) as (client, _):
        workers = client.app.state.ingest.workers  # type: ignore[attr-defined]
        (pid,) = workers.pids()
        # A SIGTERM or Ctrl-C meant for the whole service does not end a worker mid-batch.
        os.kill(pid, signal.SIGTERM)
        os.kill(pid, signal.SIGINT)
        served = client.post("/api/v1/events", content=ndjson(event(9)), headers=auth)
        assert served.status_code == 200
        assert workers.pids() == [pid]
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        statuses = []
        while time.monotonic() < deadline:  # the pool notices the death on its own thread
            response = client.post("/api/v1/events", content=ndjson(event(1)), headers=auth)
            statuses.append(response.status_code)
            if response.status_code == 503:
                assert "send it again" in response.json()["reason"]
                assert response.headers["retry-after"] == "1"
                break
            time.sleep(0.05)
        assert statuses[-1] == 503, statuses
        again = client.post("/api/v1/events", content=ndjson(event(1), event(2)), headers=auth)
        assert again.status_code == 200
        assert workers.pids() != [pid]
        assert again.json()["accepted"] + again.json()["duplicate"] == 2


def test_workers_that_cannot_start_again_answer_503_until_they_can(
    migrated: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = TokenStore(migrated).create("agent-1", ["fgw"])
    auth = {"authorization": f"Bearer {token}"}
    with client_of(migrated, 1) as (client, _):
        workers = client.app.state.ingest.workers  # type: ignore[attr-defined]
        (pid,) = workers.pids()
        restart = workers._started

        def cannot(_fingerprint: str) -> None:
            raise RuntimeError("no worker can start")

        monkeypatch.setattr(workers, "_started", cannot)
        os.kill(pid, signal.SIGKILL)
        statuses: list[int] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and statuses.count(503) < 2:
            response = client.post("/api/v1/events", content=ndjson(event(1)), headers=auth)
            statuses.append(response.status_code)
            time.sleep(0.05)
        assert statuses.count(503) == 2, statuses
        assert 500 not in statuses, statuses
        monkeypatch.setattr(workers, "_started", restart)
        answers = [
            client.post("/api/v1/events", content=ndjson(event(1)), headers=auth).status_code
            for _ in range(2)
        ]
        assert answers[-1] == 200, answers
