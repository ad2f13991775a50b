"""Contract tests of the server's store, run on SQLite and on PostgreSQL alike."""

from __future__ import annotations

import fcntl
import hashlib
import os
import sqlite3
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, select
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy.exc import OperationalError, StatementError

from casework.events import CaseEvent
from server.errors import (
    AgentExistsError,
    SchemaOutOfDateError,
    TokenRevokedError,
    UnknownAgentError,
)
from server.store import database, tables
from server.store.database import exclusive, make_engine, sqlite_writer, start_writing
from server.store.events import EventStore
from server.store.migrate import check_current, current_revision, head_revision, upgrade_engine
from server.store.queue import ProjectionQueue
from server.store.tokens import Grant, TokenStore

CST = timezone(timedelta(hours=8))
#: The fake clock's instant, given in UTC+8 so that storing it must convert it.
NOW = datetime(2024, 3, 1, 9, 30, tzinfo=CST)


def fixed_now() -> datetime:
    return NOW


def event(
    event_id: str,
    case_id: str = "C1",
    department: str = "fgw",
    type_: str = "accepted",
    at: datetime = datetime(2024, 3, 1, 9, 0, tzinfo=CST),
    **fields: object,
) -> CaseEvent:
    return CaseEvent(
        event_id=event_id,
        case_id=case_id,
        department=department,
        item="fgw-001",
        type=type_,  # type: ignore[arg-type]
        at=at,
        **fields,  # type: ignore[arg-type]
    )


# -- migrations ------------------------------------------------------------------------


def test_migrations_apply_and_are_idempotent(engine: Engine) -> None:
    assert current_revision(engine) is None
    with pytest.raises(SchemaOutOfDateError, match="db upgrade"):
        check_current(engine)
    upgrade_engine(engine)
    upgrade_engine(engine)
    assert current_revision(engine) == head_revision()
    check_current(engine)
    assert set(inspect(engine).get_table_names()) >= {
        "events",
        "quarantine",
        "tokens",
        "seq_gaps",
        "alembic_version",
    }


def test_the_migrations_build_exactly_the_tables(migrated: Engine) -> None:
    with migrated.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, tables.metadata) == []


# -- events ----------------------------------------------------------------------------


def test_a_batch_tells_accepted_from_duplicate(migrated: Engine) -> None:
    store = EventStore(migrated, now=fixed_now)
    assert store.add_batch("agent-1", [event("e1"), event("e2")]) == ["accepted", "accepted"]
    outcomes = store.add_batch(
        "agent-1",
        [
            event("e1"),  # stored by the first batch
            event("e3"),
            event("e3"),  # twice in this batch: the second is the duplicate
            event("e1", department="jyj"),  # the same id in another department is another event
        ],
    )
    assert outcomes == ["duplicate", "accepted", "duplicate", "accepted"]
    assert store.count() == 4


def test_a_retried_batch_creates_no_duplicate(migrated: Engine) -> None:
    store = EventStore(migrated, now=fixed_now)
    batch = [event(f"e{i}", case_id=f"C{i % 3}") for i in range(50)]
    assert store.add_batch("agent-1", batch) == ["accepted"] * 50
    assert store.add_batch("agent-1", batch) == ["duplicate"] * 50
    assert store.add_batch("agent-1", [*batch[:10], event("new")]) == ["duplicate"] * 10 + [
        "accepted"
    ]
    assert store.count() == 51
    assert store.add_batch("agent-1", []) == []


class InjectedCrashError(Exception):
    """The failure injected half-way through writing a batch."""


def test_a_batch_that_fails_half_way_stores_nothing(migrated: Engine) -> None:
    store = EventStore(migrated, now=fixed_now)
    store.add_batch("agent-1", [event(f"e{i}") for i in range(10)])
    big = [event(f"e{i}", case_id=f"C{i}") for i in range(5000)]
    statements: list[str] = []

    def note(*args: Any) -> None:
        statements.append(args[2])

    def crash_after_the_events_are_written(*_: Any) -> None:
        raise InjectedCrashError

    # Every statement of the batch is sent (the events, their cases' queue rows), then the
    # commit fails.
    sqlalchemy_event.listen(migrated, "before_cursor_execute", note)
    sqlalchemy_event.listen(migrated, "commit", crash_after_the_events_are_written)
    try:
        with pytest.raises(InjectedCrashError):
            store.add_batch("agent-1", big)
    finally:
        sqlalchemy_event.remove(migrated, "before_cursor_execute", note)
        sqlalchemy_event.remove(migrated, "commit", crash_after_the_events_are_written)
    assert any("INSERT INTO events" in s for s in statements)
    assert any("INSERT INTO projection_queue" in s for s in statements)
    assert store.count() == 10
    assert ProjectionQueue(migrated).pending() == 1  # the first batch's one case only
    assert store.add_batch("agent-1", big) == ["duplicate"] * 10 + ["accepted"] * 4990
    assert store.count() == 5000
    assert ProjectionQueue(migrated).pending() == 1 + 4990


def test_the_first_stored_event_is_kept(migrated: Engine) -> None:
    store = EventStore(migrated, now=fixed_now)
    store.add_batch("agent-1", [event("e1", type_="accepted")])
    store.add_batch("agent-2", [event("e1", type_="withdrawn")])
    assert [e.type for e in store.events_of_case("fgw", "C1")] == ["accepted"]


def test_events_round_trip_through_the_store(migrated: Engine) -> None:
    store = EventStore(migrated, now=fixed_now)
    day = datetime(2024, 3, 1, 9, 0, tzinfo=CST)
    events = [
        event("a", type_="accepted", at=day, seq=1, promised_days=5, legal_days=20),
        event("s", type_="suspended", at=day + timedelta(days=1), reason="hearing", days=3),
        event(
            "t",
            type_="step",
            at=day + timedelta(days=2),
            step="审查",
            handler="张三",
            step_days=2,
            extra={"note": "附件 3 份", "nested": {"k": [1, 2]}},
        ),
        event("r", type_="resumed", at=datetime(2024, 3, 5, 1, 0, tzinfo=UTC)),
        event("x", type_="extended", at=day + timedelta(days=6), days=2),
        event("c", type_="completed", at=day + timedelta(days=9), result="approved"),
    ]
    # Arrival order is kept, whatever the instants say.
    arrival = [events[3], events[0], events[5], events[1], events[2], events[4]]
    store.add_batch("agent-1", arrival[:3])
    store.add_batch("agent-1", [event("other", case_id="C2"), *arrival[3:]])
    back = store.events_of_case("fgw", "C1")
    assert back == arrival
    assert [e.at.utcoffset() for e in back] == [e.at.utcoffset() for e in arrival]
    assert back[4].extra == {"note": "附件 3 份", "nested": {"k": [1, 2]}}
    assert store.events_of_case("fgw", "C2") == [event("other", case_id="C2")]
    assert store.events_of_case("jyj", "C1") == []


def test_instants_come_back_aware_in_utc(migrated: Engine) -> None:
    store = EventStore(migrated, now=fixed_now)
    at = datetime(2024, 3, 1, 23, 30, tzinfo=CST)
    store.add_batch("agent-1", [event("e1", at=at)])
    with migrated.connect() as connection:
        row = connection.execute(
            select(tables.events.c.at, tables.events.c.received_at, tables.events.c.source_agent)
        ).one()
    assert row.at == at
    assert row.at.tzinfo == UTC
    assert row.received_at == NOW
    assert row.received_at.tzinfo == UTC
    assert row.source_agent == "agent-1"


def test_a_naive_instant_is_refused(migrated: Engine) -> None:
    with migrated.begin() as connection, pytest.raises(StatementError, match="no UTC offset"):
        connection.execute(
            tables.quarantine.insert(),
            {"received_at": datetime(2024, 3, 1), "agent": "a", "reason": "r", "body": "{}"},
        )


def test_quarantine_and_gaps_are_kept(migrated: Engine) -> None:
    store = EventStore(migrated, now=fixed_now)
    store.quarantine("agent-1", '{"event_id": ""}', "event_id: must not be empty")
    store.quarantine("agent-2", "not json", "malformed JSON")
    kept = store.quarantined()
    assert [(q.agent, q.reason, q.body) for q in kept] == [
        ("agent-2", "malformed JSON", "not json"),
        ("agent-1", "event_id: must not be empty", '{"event_id": ""}'),
    ]
    assert all(q.received_at == NOW and q.received_at.tzinfo == UTC for q in kept)
    assert store.count() == 0

    store.record_gap("agent-1", "dropdir:fgw", expected=7, got=10)
    [gap] = store.gaps()
    assert (gap.agent, gap.source, gap.expected, gap.got) == ("agent-1", "dropdir:fgw", 7, 10)
    assert gap.detected_at == NOW
    assert gap.detected_at.tzinfo == UTC


# -- tokens ----------------------------------------------------------------------------


def test_a_token_is_stored_as_its_hash_only(migrated: Engine) -> None:
    tokens = TokenStore(migrated, now=fixed_now)
    token = tokens.create("agent-1", ["jyj", "fgw"])
    assert len(token) >= 43
    assert tokens.verify(token) == Grant("agent-1", frozenset({"fgw", "jyj"}))
    with migrated.connect() as connection:
        rows = connection.execute(select(tables.tokens)).all()
    assert len(rows) == 1
    assert all(token not in str(value) for value in rows[0])
    assert rows[0].token_sha256 == hashlib.sha256(token.encode()).hexdigest()
    assert rows[0].departments == "fgw,jyj"


def test_unknown_and_revoked_tokens_verify_to_none(migrated: Engine) -> None:
    tokens = TokenStore(migrated, now=fixed_now)
    token = tokens.create("agent-1", ["fgw"])
    other = tokens.create("agent-2", ["jyj"])
    assert tokens.verify("not-a-token") is None
    assert tokens.verify(token[:-1]) is None
    tokens.revoke("agent-1")
    assert tokens.verify(token) is None
    assert tokens.verify(other) == Grant("agent-2", frozenset({"jyj"}))


def test_listing_shows_state_but_never_the_token(migrated: Engine) -> None:
    tokens = TokenStore(migrated, now=fixed_now)
    assert tokens.list() == []
    tokens.create("b-agent", ["jyj"])
    tokens.create("a-agent", ["fgw", "jyj"])
    tokens.revoke("b-agent")
    listed = tokens.list()
    assert [(i.agent, i.departments, i.live) for i in listed] == [
        ("a-agent", ("fgw", "jyj"), True),
        ("b-agent", ("jyj",), False),
    ]
    assert listed[0].created_at == NOW
    assert listed[0].created_at.tzinfo == UTC
    assert listed[1].revoked_at == NOW


def test_token_errors_name_the_agent(migrated: Engine) -> None:
    tokens = TokenStore(migrated, now=fixed_now)
    tokens.create("agent-1", ["fgw"])
    with pytest.raises(AgentExistsError, match="'agent-1' already has a token"):
        tokens.create("agent-1", ["jyj"])
    with pytest.raises(UnknownAgentError, match="'agent-9'"):
        tokens.revoke("agent-9")
    tokens.revoke("agent-1")
    with pytest.raises(TokenRevokedError, match="'agent-1' was already revoked"):
        tokens.revoke("agent-1")
    with pytest.raises(ValueError, match="department"):
        tokens.create("agent-2", [])
    with pytest.raises(ValueError, match="agent name"):
        tokens.create(" ", ["fgw"])
    with pytest.raises(ValueError, match="agent name"):
        tokens.create("a" * 129, ["fgw"])


def test_a_revoked_agent_gets_a_new_token(migrated: Engine) -> None:
    tokens = TokenStore(migrated, now=fixed_now)
    old = tokens.create("agent-1", ["fgw"])
    tokens.revoke("agent-1")
    new = tokens.create("agent-1", ["jyj"])
    assert new != old
    assert tokens.verify(old) is None
    assert tokens.verify(new) == Grant("agent-1", frozenset({"jyj"}))
    assert [i.live for i in tokens.list()] == [True]


# -- SQLite specifics ------------------------------------------------------------------


def test_the_sqlite_folder_is_made_and_wal_is_on(tmp_path: Path) -> None:
    path = tmp_path / "var" / "deeper" / "esup.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as connection:
            mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar_one()
        assert mode == "wal"
        assert path.exists()
    finally:
        engine.dispose()


def test_sqlite_writers_of_one_process_queue_and_give_up_after_the_busy_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    try:
        holding, release = threading.Event(), threading.Event()

        def hold() -> None:
            with sqlite_writer(engine):
                holding.set()
                release.wait(10)

        holder = threading.Thread(target=hold)
        holder.start()
        holding.wait(10)
        monkeypatch.setattr(database, "SQLITE_BUSY_TIMEOUT_MS", 100)
        with pytest.raises(OperationalError, match="database is locked"), sqlite_writer(engine):
            pass
        release.set()
        holder.join(10)
        with sqlite_writer(engine):  # free again once the holder is done
            pass
    finally:
        engine.dispose()


def test_sqlite_writers_of_other_processes_queue_on_the_file_beside_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    other = os.open(tmp_path / "w.db-writer", os.O_RDWR | os.O_CREAT)  # as another process
    try:
        fcntl.flock(other, fcntl.LOCK_EX)
        monkeypatch.setattr(database, "SQLITE_BUSY_TIMEOUT_MS", 100)
        with pytest.raises(OperationalError, match="database is locked"), sqlite_writer(engine):
            pass
        fcntl.flock(other, fcntl.LOCK_UN)
        with sqlite_writer(engine), pytest.raises(BlockingIOError):  # held in the block
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # and free after it
    finally:
        os.close(other)
        engine.dispose()


def test_sqlite_stores_a_batch_in_few_statements_of_few_sizes(
    tmp_path: Path,
) -> None:
    # The driver's executemany gives Python's GIL up around every row while holding the write
    # lock; a batch goes as multi-row statements instead, of a power of two rows each (the
    # driver keeps each statement it compiled) within SQLite's limit on bound values
    # (lowered here to 45: four events, or eight queued cases, a statement).
    engine = make_engine(f"sqlite:///{tmp_path / 'limit.db'}")
    try:
        upgrade_engine(engine)

        @sqlalchemy_event.listens_for(engine, "connect")
        def lower_the_limit(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 45)

        engine.dispose()  # connections from now on have the lower limit
        store = EventStore(engine, now=fixed_now)
        assert (
            store.add_batch("agent-1", [event("e2", case_id="C2"), event("e7", case_id="C7")])
            == ["accepted"] * 2
        )
        inserts: list[tuple[int, bool]] = []

        @sqlalchemy_event.listens_for(engine, "before_cursor_execute")
        def note(_conn: Any, _cursor: Any, sql: str, params: Any, _ctx: Any, many: bool) -> None:
            if sql.startswith(("INSERT INTO events", "INSERT INTO projection_queue")):
                inserts.append((len(params), many))

        batch = [event(f"e{i}", case_id=f"C{i}") for i in range(15)]
        expected = ["duplicate" if i in (2, 7) else "accepted" for i in range(15)]
        assert store.add_batch("agent-1", batch) == expected
        # Statements of a power of two rows, at most 4 events (40 values) or 8 cases (32):
        # 15 events as 4 + 4 + 4 + 2 + 1 rows, 13 new cases as 8 + 4 + 1.
        events = [(40, False)] * 3 + [(20, False), (10, False)]
        assert inserts == [*events, (32, False), (16, False), (4, False)]
        assert store.count() == 15
        queued = {(d, c) for d, c, _ in ProjectionQueue(engine).take(100)}
        assert queued == {("fgw", f"C{i}") for i in range(15)}
    finally:
        engine.dispose()


def test_sqlite_exclusive_reading_first_holds_up_other_writers_only_once_it_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        upgrade_engine(engine)
        store = EventStore(engine, now=fixed_now)
        monkeypatch.setattr(database, "SQLITE_BUSY_TIMEOUT_MS", 200)
        reading, wrote = threading.Event(), threading.Event()
        go, finish = threading.Event(), threading.Event()
        failures: list[BaseException] = []

        def holder() -> None:
            try:
                with exclusive(engine, 7, reads_first=True) as connection:
                    connection.exec_driver_sql("SELECT count(*) FROM events").scalar_one()
                    reading.set()
                    go.wait(10)
                    start_writing(connection)
                    connection.exec_driver_sql(
                        "INSERT INTO server_state (key, value, updated_at)"
                        " VALUES ('k', 'v', '2024-03-01 01:30:00.000000')"
                    )
                    wrote.set()
                    finish.wait(10)
            except BaseException as exc:
                failures.append(exc)

        thread = threading.Thread(target=holder)
        thread.start()
        assert reading.wait(10)
        # Reading: another writer (ingest) goes ahead; another holder of the key waits.
        assert store.add_batch("agent-1", [event("e1")]) == ["accepted"]
        with pytest.raises(OperationalError, match="lock-7"), exclusive(engine, 7):
            pass
        go.set()
        assert wrote.wait(10)
        # Writing: now it holds the database's write lock until it commits.
        with pytest.raises(OperationalError, match="database is locked"):
            store.add_batch("agent-1", [event("e2")])
        finish.set()
        thread.join(10)
        assert not failures, failures
        assert store.add_batch("agent-1", [event("e2")]) == ["accepted"]
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT value FROM server_state").scalar_one() == "v"
    finally:
        engine.dispose()
