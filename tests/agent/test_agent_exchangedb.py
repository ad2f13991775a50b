"""The exchange-database source on SQLite and PostgreSQL tables: keyset pages, checkpoint
committed with the events, bad rows aside."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from agenthelpers import FakeClock
from sqlalchemy import Engine, create_engine, text

from agent.config import ExchangeDbConfig
from agent.outbox import Outbox
from agent.sources.exchangedb import ExchangeDb, decode_key, encode_key

T0 = datetime(2024, 3, 1, 9, 0, 0)


@pytest.fixture
def exchange(exchange_url: str) -> Iterator[Engine]:
    engine = create_engine(exchange_url)
    with engine.begin() as db:
        db.execute(
            text(
                "CREATE TABLE case_events (id INTEGER NOT NULL, updated_at TIMESTAMP NOT NULL,"
                " evt_no VARCHAR(64), case_no VARCHAR(64), dept VARCHAR(16), item_code"
                " VARCHAR(64), evt_type VARCHAR(16), evt_time TIMESTAMP, promised INTEGER)"
            )
        )
    try:
        yield engine
    finally:
        engine.dispose()


def insert(engine: Engine, rows: list[dict[str, Any]]) -> None:
    with engine.begin() as db:
        db.execute(
            text(
                "INSERT INTO case_events VALUES (:id, :updated_at, :evt_no, :case_no, :dept,"
                " :item_code, :evt_type, :evt_time, :promised)"
            ),
            rows,
        )


def row(number: int, updated: datetime, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": number,
        "updated_at": updated,
        "evt_no": f"x-{number}",
        "case_no": f"C-{number}",
        "dept": "fgw",
        "item_code": "fgw-001",
        "evt_type": "accepted",
        "evt_time": T0,
        "promised": 5,
    }
    base.update(fields)
    return base


def source(
    url: str, state: sqlite3.Connection, outbox: Outbox, clock: FakeClock, engine: Engine
) -> ExchangeDb:
    config = ExchangeDbConfig.model_validate(
        {
            "kind": "exchange_db",
            "name": "frontdb",
            "url": url,
            "query": "SELECT * FROM case_events",
            "columns": {
                "event_id": "evt_no",
                "case_id": "case_no",
                "department": "dept",
                "item": "item_code",
                "type": "evt_type",
                "at": "evt_time",
                "promised_days": "promised",
            },
            "page_size": 10,
        }
    )
    return ExchangeDb(config, state, outbox, ["fgw"], clock=clock, engine=engine)


def test_pages_follow_updated_at_then_id_and_the_checkpoint_survives_a_restart(
    exchange_url: str,
    exchange: Engine,
    state: sqlite3.Connection,
    outbox: Outbox,
    clock: FakeClock,
) -> None:
    # Ids out of updated_at order, and several rows sharing one updated_at across a page end.
    rows = [row(n, T0 + timedelta(seconds=n // 4)) for n in range(25, 0, -1)]
    insert(exchange, rows)
    first = source(exchange_url, state, outbox, clock, exchange)
    assert first.poll() is True
    assert first.poll() is True
    assert first.poll() is False
    assert first.poll() is False
    taken = outbox.take(state, 100)
    expected = sorted(rows, key=lambda r: (r["updated_at"], r["id"]))
    assert [r.event_id for r in taken] == [r["evt_no"] for r in expected]
    assert [r.seq for r in taken] == list(range(1, 26))
    body = json.loads(taken[0].body)
    assert body["at"] == "2024-03-01T09:00:00+08:00"
    assert body["promised_days"] == 5
    assert first.events_read == 25

    insert(exchange, [row(26, T0 + timedelta(minutes=5)), row(0, T0 + timedelta(minutes=5))])
    again = source(exchange_url, state, outbox, clock, exchange)  # a restarted agent
    mark = again.checkpoint()
    assert mark is not None
    # As the database hands it out: a datetime from PostgreSQL, text from SQLite.
    assert str(mark[0]) == str(expected[-1]["updated_at"])
    assert mark[1] == 25
    assert again.poll() is False
    assert [r.event_id for r in outbox.take(state, 100)[25:]] == ["x-0", "x-26"]


def test_a_bad_row_is_kept_aside_and_the_others_go_on(
    exchange_url: str,
    exchange: Engine,
    state: sqlite3.Connection,
    outbox: Outbox,
    clock: FakeClock,
) -> None:
    insert(
        exchange,
        [
            row(1, T0),
            row(2, T0, evt_type="approved"),
            row(3, T0, dept="zzz"),
            row(4, T0, evt_time=None),
            row(5, T0, item_code="unknown-item"),
        ],
    )
    reader = source(exchange_url, state, outbox, clock, exchange)
    assert reader.poll() is False
    assert [r.event_id for r in outbox.take(state, 10)] == ["x-1", "x-5"]
    assert reader.events_rejected == 3
    reasons = [r for (r,) in state.execute("SELECT reason FROM exchangedb_rejected ORDER BY id")]
    assert [r.split(":")[0] for r in reasons] == ["type", "department", "at"]


def test_the_source_reads_nothing_while_the_outbox_is_full(
    exchange_url: str, exchange: Engine, state: sqlite3.Connection, clock: FakeClock
) -> None:
    insert(exchange, [row(n, T0) for n in range(1, 40)])
    box = Outbox(2048, clock=clock)
    box.load(state)
    reader = source(exchange_url, state, box, clock, exchange)
    while reader.poll():
        pass
    assert box.paused()
    held = box.depth()
    assert held < 39
    box.settle(state, box.take(state, 100))
    while reader.poll():
        pass
    assert held + box.depth() == 39


def test_checkpoint_values_keep_their_type() -> None:
    for value in (T0, T0.date(), 7, "abc", 1.5):
        assert decode_key(json.loads(json.dumps(encode_key(value)))) == value
