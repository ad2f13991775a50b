"""The projection queue and its drainers: written with the events, taken by version,
run once across servers, and caught up on demand (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from casework.clock import Clock
from casework.configfiles import load_config
from casework.events import CaseEvent
from server.app import create_app
from server.cases import CaseProjector
from server.projection import Projection, ProjectionWorker
from server.settings import ServerSettings
from server.store import tables
from server.store.database import make_engine
from server.store.events import EventStore
from server.store.queue import ProjectionQueue
from server.store.tokens import TokenStore

CONFIG = Path(__file__).resolve().parents[2] / "config"
NOW = datetime(2024, 3, 1, 4, 0, tzinfo=UTC)
CST_MORNING = datetime(2024, 3, 1, 1, 30, tzinfo=UTC)

Key = tuple[str, str]


def event(n: int, case_id: str = "C-1") -> CaseEvent:
    return CaseEvent(
        event_id=f"e-{n}",
        case_id=case_id,
        department="fgw",
        item="fgw-001",
        type="accepted",
        at=CST_MORNING + timedelta(minutes=n),
    )


class Recorder:
    """A `refresh` stand-in: notes each batch of keys, and can run something mid-way."""

    def __init__(self) -> None:
        self.batches: list[list[Key]] = []
        self.during: list[object] = []

    def __call__(self, keys: Iterable[Key]) -> int:
        batch = list(keys)
        self.batches.append(batch)
        while self.during:
            action = self.during.pop()
            assert callable(action)
            action()
        return len(batch)


def test_stored_events_queue_their_cases_once_each(migrated: Engine) -> None:
    store = EventStore(migrated, now=lambda: NOW)
    queue = ProjectionQueue(migrated)
    assert queue.lag().pending == 0
    assert queue.span() is None
    store.add_batch("agent-1", [event(1), event(2), event(3, "C-2")])
    assert queue.lag().pending == 2
    store.add_batch("agent-1", [event(1), event(2)])  # duplicates queue nothing new
    taken = sorted(queue.take(10))
    assert taken == [("fgw", "C-1", 1), ("fgw", "C-2", 1)]
    lag = queue.lag()
    assert lag.oldest == NOW
    assert lag.newest == NOW
    assert queue.span() == (NOW, NOW)


def test_a_case_marked_again_after_it_was_taken_stays_queued(migrated: Engine) -> None:
    store = EventStore(migrated, now=lambda: NOW)
    store.add_batch("agent-1", [event(1), event(2, "C-2")])
    recorder = Recorder()
    projection = Projection(migrated, recorder, batch_size=10)
    # While the batch is being projected, another event of C-1 is stored.
    recorder.during.append(lambda: store.add_batch("agent-1", [event(3)]))
    assert projection.run_once() == 2
    assert ProjectionQueue(migrated).take(10) == [("fgw", "C-1", 2)]
    assert projection.run_once() == 1
    assert recorder.batches[-1] == [("fgw", "C-1")]
    assert projection.run_once() == 0
    assert projection.projected == 3


def test_batches_are_bounded_and_drain_empties_the_queue(migrated: Engine) -> None:
    store = EventStore(migrated, now=lambda: NOW)
    store.add_batch("agent-1", [event(n, f"C-{n}") for n in range(25)])
    recorder = Recorder()
    projection = Projection(migrated, recorder, batch_size=10)
    assert projection.drain() == 25
    assert [len(b) for b in recorder.batches] == [10, 10, 5]
    assert {k for b in recorder.batches for k in b} == {("fgw", f"C-{n}") for n in range(25)}
    assert ProjectionQueue(migrated).pending() == 0


def test_a_failed_projection_leaves_the_cases_queued(migrated: Engine) -> None:
    EventStore(migrated, now=lambda: NOW).add_batch("agent-1", [event(1)])

    def broken(_keys: Iterable[Key]) -> int:
        raise RuntimeError("database went away")

    with pytest.raises(RuntimeError):
        Projection(migrated, broken).run_once()
    assert ProjectionQueue(migrated).pending() == 1
    assert Projection(migrated, Recorder()).run_once() == 1


def test_a_process_without_the_lock_projects_nothing(migrated: Engine) -> None:
    EventStore(migrated, now=lambda: NOW).add_batch("agent-1", [event(1)])

    @contextmanager
    def held_elsewhere() -> Iterator[bool]:
        yield False

    recorder = Recorder()
    assert Projection(migrated, recorder, lock=held_elsewhere).run_once() is None
    assert recorder.batches == []
    assert ProjectionQueue(migrated).pending() == 1


def test_on_postgresql_one_projection_at_a_time_across_processes(migrated: Engine) -> None:
    if migrated.dialect.name != "postgresql":
        # SQLite: one server process and no advisory lock; a projection always runs.
        EventStore(migrated, now=lambda: NOW).add_batch("agent-1", [event(1)])
        assert Projection(migrated, Recorder()).run_once() == 1
        return
    other = make_engine(migrated.url)
    try:
        EventStore(migrated, now=lambda: NOW).add_batch("agent-1", [event(1)])
        seen: list[int | None] = []
        second = Projection(other, Recorder())
        first = Recorder()
        # While the first projection holds the advisory lock, the second one skips.
        first.during.append(lambda: seen.append(second.run_once()))
        assert Projection(migrated, first).run_once() == 1
        assert seen == [None]
        assert second.run_once() == 0
    finally:
        other.dispose()


def test_due_when_ingest_pauses_or_a_case_waited_too_long(migrated: Engine) -> None:
    clock = [NOW]
    store = EventStore(migrated, now=lambda: clock[0])
    projection = Projection(
        migrated, Recorder(), quiet=timedelta(seconds=1), max_lag=timedelta(seconds=30)
    )
    assert not projection.due(NOW + timedelta(hours=1))  # nothing queued
    store.add_batch("agent-1", [event(1, "C-1")])
    assert ProjectionQueue(migrated).span() == (NOW, NOW)
    assert not projection.due(NOW + timedelta(milliseconds=500))  # ingest is busy
    assert projection.due(NOW + timedelta(seconds=1))  # it paused
    clock[0] = NOW + timedelta(seconds=29)
    store.add_batch("agent-1", [event(2, "C-2")])
    assert not projection.due(NOW + timedelta(seconds=29, milliseconds=500))
    assert projection.due(NOW + timedelta(seconds=30))  # C-1 waited 30 s
    assert projection.project_when_due(NOW + timedelta(seconds=30)) == 2


def test_ingest_over_http_then_catch_up_derives_the_cases(migrated: Engine) -> None:
    deployment = load_config(CONFIG)
    projector = CaseProjector(
        migrated, Clock.for_deployment(deployment), deployment, now=lambda: NOW
    )
    projection = Projection(migrated, projector.refresh)
    worker = ProjectionWorker(projection, poll=3600)  # woken by ingest, never by its poll
    heard: list[object] = []

    def on_accepted(cases: object) -> None:
        heard.append(cases)
        worker.wake(cases)

    app = create_app(
        ServerSettings(),
        engine=migrated,
        deployment=deployment,
        now=lambda: NOW,
        on_accepted=on_accepted,
    )
    token = TokenStore(migrated).create("agent-1", ["fgw"])
    body = b"".join(
        f'{{"event_id":"e-{n}","case_id":"C-{n}","department":"fgw","item":"fgw-001",'
        f'"type":"accepted","at":"2024-03-01T09:30:00+08:00"}}\n'.encode()
        for n in range(5)
    )
    with TestClient(app) as client:
        response = client.post(
            "/api/v1/events", content=body, headers={"authorization": f"Bearer {token}"}
        )
        assert response.json()["accepted"] == 5
        assert client.get("/api/v1/projection").json()["pending"] == 5
        projection.catch_up(timeout=30)
        lag = client.get("/api/v1/projection").json()
    assert lag == {"pending": 0, "oldest_marked_at": None}
    assert len(heard) == 1
    with migrated.connect() as connection:
        rows = connection.execute(select(tables.cases.c.case_id, tables.cases.c.state)).all()
    assert sorted(rows) == [(f"C-{n}", "open") for n in range(5)]
