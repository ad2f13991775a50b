"""A server killed with SIGKILL during ingest loses nothing it answered 2xx for,
the restarted server projects every case whose events were answered, and
resending every batch afterwards stores each event exactly once; with ingest
in worker processes too, which end on their own once the server is gone."""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest
from serverprocess import ServerProcess, running_server, upgrade
from sqlalchemy import func, select

from server.store.database import make_engine
from server.store.tables import cases, events
from server.store.tokens import TokenStore

BATCHES = 50
PER_BATCH = 200


def batch(number: int) -> bytes:
    """Batch `number` as JSON Lines: PER_BATCH accepted events of distinct cases."""
    lines = []
    for i in range(PER_BATCH):
        event = {
            "event_id": f"e-{number}-{i}",
            "case_id": f"C-{number}-{i}",
            "department": "fgw",
            "item": "fgw-001",
            "type": "accepted",
            "at": "2024-03-01T09:30:00+08:00",
            "seq": number * PER_BATCH + i + 1,
        }
        lines.append(json.dumps(event))
    return ("\n".join(lines) + "\n").encode()


def post(client: httpx.Client, number: int) -> httpx.Response:
    return client.post("/api/v1/events", content=batch(number))


def caught_up(client: httpx.Client, timeout: float = 60) -> None:
    """Return once the server reports no case waiting for projection."""
    deadline = time.monotonic() + timeout
    while client.get("/api/v1/projection").json()["pending"]:
        assert time.monotonic() < deadline, f"the projection did not catch up in {timeout} s"
        time.sleep(0.05)


def projected(database_url: str) -> set[str]:
    """The case_id of every case with a row in `cases`."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            return set(connection.execute(select(cases.c.case_id)).scalars())
    finally:
        engine.dispose()


@pytest.mark.parametrize("processes", [0, 2], ids=["in-process", "ingest-workers"])
def test_sigkill_during_ingest_loses_nothing_answered_and_a_resend_adds_no_duplicate(
    database_url: str, tmp_path: Path, processes: int
) -> None:
    seed = random.randrange(2**32)
    chance = random.Random(seed)
    upgrade(database_url, tmp_path)
    engine = make_engine(database_url)
    try:
        token = TokenStore(engine).create("agent-1", ["fgw"])
    finally:
        engine.dispose()
    headers = {"authorization": f"Bearer {token}"}

    answered: list[int] = []  # batches answered 2xx before the kill, in order
    unanswered: list[int] = []
    server = ServerProcess(tmp_path, database_url, "first", ingest_processes=processes)
    try:
        server.wait_ready()
        # The projection, and the ingest workers with multiprocessing's resource tracker.
        children = psutil.Process(server.pid).children()
        assert len(children) == 1 + (processes + 1 if processes else 0), children

        def send() -> None:
            with httpx.Client(base_url=server.base_url, headers=headers, timeout=30) as client:
                for number in range(BATCHES):
                    try:
                        response = post(client, number)
                    except httpx.TransportError:
                        unanswered.extend(range(number, BATCHES))
                        return
                    assert response.is_success, response.text
                    assert response.json()["accepted"] == PER_BATCH
                    answered.append(number)

        sender = threading.Thread(target=send)
        sender.start()
        # Kill after a random number of answered batches, at a random moment of the next.
        kill_after = chance.randrange(5, BATCHES - 10)
        deadline = time.monotonic() + 60
        while len(answered) < kill_after and sender.is_alive():
            assert time.monotonic() < deadline, "the batches took over 60 s"
            time.sleep(0.002)
        time.sleep(chance.uniform(0, 0.05))
        server.kill()
        sender.join(timeout=60)
        assert not sender.is_alive()
        # Without the server, its processes end on their own: nothing left holding the database.
        _, alive = psutil.wait_procs(children, timeout=10)
        assert not alive, alive
    finally:
        server.close()
    assert unanswered, f"the kill came after the last batch (seed {seed})"
    acknowledged = {f"e-{n}-{i}" for n in answered for i in range(PER_BATCH)}

    with (
        running_server(tmp_path, database_url, "second") as again,
        httpx.Client(base_url=again.base_url, headers=headers, timeout=30) as client,
    ):
        # The cases of the batches answered before the kill were queued with their
        # events; the restarted server projects them, whatever the kill interrupted.
        caught_up(client)
        assert {f"C-{n}-{i}" for n in answered for i in range(PER_BATCH)} <= projected(
            database_url
        ), seed
        for number in range(BATCHES):
            response = post(client, number)
            assert response.status_code == 200, response.text
            if number in answered:  # already stored: nothing new
                assert response.json()["duplicate"] == PER_BATCH, (number, seed)
            assert response.json()["rejected"] == 0
        caught_up(client)

    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            stored = list(connection.execute(select(events.c.event_id)).scalars())
            rows = connection.execute(select(func.count()).select_from(events)).scalar_one()
    finally:
        engine.dispose()
    everything = {f"e-{n}-{i}" for n in range(BATCHES) for i in range(PER_BATCH)}
    assert rows == len(stored) == len(set(stored)) == BATCHES * PER_BATCH, seed
    assert set(stored) == everything, seed
    assert acknowledged <= set(stored), seed
    assert projected(database_url) == {
        f"C-{n}-{i}" for n in range(BATCHES) for i in range(PER_BATCH)
    }
