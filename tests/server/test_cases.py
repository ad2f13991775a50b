"""Contract tests of the case projection, run on SQLite and on PostgreSQL alike.

The worked example is DESIGN.md's: accepted 2018-10-15 10:00, promised 7 and
legal 10 working days: warning from 2018-10-22, yellow from 10-25, red from
10-30 (local midnights, Asia/Shanghai).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from datetime import date, datetime
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Connection, Engine, delete, select
from sqlalchemy import event as sqlalchemy_event

import server.cases
from casework.calendar import WorkCalendar
from casework.clock import Clock, Limits
from casework.events import CaseEvent
from server.cases import INVALID, SUPERSEDED, CaseProjector, Derived, Key
from server.store import tables
from server.store.events import EventStore

TZ = ZoneInfo("Asia/Shanghai")
DEPT = "zrzy"
ITEM = "zrzy-001"


def local(text: str) -> datetime:
    """'2018-10-15 10:00' or '2018-10-15' as an aware Asia/Shanghai instant."""
    fmt = "%Y-%m-%d %H:%M" if " " in text else "%Y-%m-%d"
    return datetime.strptime(text, fmt).replace(tzinfo=TZ)


@cache
def clock() -> Clock:
    return Clock(WorkCalendar.from_package(), TZ)


class FakeCatalog:
    """Limits by item code; unknown codes raise LookupError as `Deployment.limits` does."""

    def __init__(self, limits: dict[str, Limits]) -> None:
        self.items = dict(limits)

    def limits(self, code: str) -> Limits:
        if code not in self.items:
            raise LookupError(f"No item has the code {code!r}")
        return self.items[code]


class FakeNow:
    """The projector's clock: an instant the test moves."""

    def __init__(self, at: str) -> None:
        self.at = local(at)

    def __call__(self) -> datetime:
        return self.at

    def set(self, at: str) -> None:
        self.at = local(at)


def ev(case_id: str, n: int, type_: str, at: str, item: str = ITEM, **fields: Any) -> CaseEvent:
    return CaseEvent(
        event_id=f"{case_id}-{n}",
        case_id=case_id,
        department=DEPT,
        item=item,
        type=type_,  # type: ignore[arg-type]
        at=local(at),
        **fields,
    )


def accepted(case_id: str, at: str = "2018-10-15 10:00", **fields: Any) -> CaseEvent:
    return ev(case_id, 1, "accepted", at, **fields)


def projector(engine: Engine, now: FakeNow) -> CaseProjector:
    return CaseProjector(engine, clock(), FakeCatalog({ITEM: Limits(7, 10, 2)}), now=now)


def store(engine: Engine, events: Sequence[CaseEvent]) -> list[Key]:
    EventStore(engine).add_batch("agent-1", events)
    return [(e.department, e.case_id) for e in events]


def case_rows(engine: Engine) -> dict[str, dict[str, Any]]:
    c = tables.cases.c
    with engine.connect() as connection:
        rows = connection.execute(select(tables.cases).order_by(c.case_id)).mappings()
        return {row["case_id"]: dict(row) for row in rows}


def card_rows(engine: Engine, *, issued_only: bool = False) -> list[tuple[Any, ...]]:
    k = tables.cards.c
    query = select(k.case_id, k.level, k.reached_at, k.voided_at, k.void_reason).order_by(
        k.case_id, k.reached_at, k.level
    )
    if issued_only:
        query = query.where(k.voided_at.is_(None))
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(query)]


# -- the published example, as time passes ----------------------------------------------


def test_the_published_example_gets_its_cards_as_time_passes(migrated: Engine) -> None:
    now = FakeNow("2018-10-15 10:00")
    cases = projector(migrated, now)
    keys = store(migrated, [accepted("X1")])
    assert cases.refresh(keys) == 1
    row = case_rows(migrated)["X1"]
    assert (row["state"], row["level"], row["card"]) == ("open", "normal", None)
    assert (row["promised_due"], row["legal_due"]) == (date(2018, 10, 24), date(2018, 10, 29))
    assert row["accepted_at"] == local("2018-10-15 10:00")
    assert row["next_change_at"] == local("2018-10-22")
    assert card_rows(migrated) == []

    now.set("2018-10-21 23:59")
    assert cases.advance() == 0
    expected = []
    for at, level, following in [
        ("2018-10-22", "warning", local("2018-10-25")),
        ("2018-10-25", "yellow", local("2018-10-30")),
        ("2018-10-30", "red", None),
    ]:
        now.set(at)
        assert cases.advance() == 1
        assert cases.advance() == 0  # nothing more is due at the same instant
        row = case_rows(migrated)["X1"]
        assert (row["level"], row["card"], row["next_change_at"]) == (level, level, following)
        expected.append(("X1", level, local(at), None, None))
        assert card_rows(migrated) == expected

    now.set("2018-11-30")
    assert cases.advance() == 0
    assert cases.refresh(keys) == 0  # the same events, the same state: nothing written
    assert card_rows(migrated) == expected  # never duplicated


def test_advance_reads_only_the_due_cases(migrated: Engine) -> None:
    now = FakeNow("2018-10-19 12:00")
    seen: list[Key] = []

    class Spy(CaseProjector):
        def _write(
            self,
            connection: Connection,
            derived: dict[Key, Derived],
            now: datetime,
            stored: dict[Key, Any],
            *,
            log_closed: bool = False,
        ) -> tuple[int, int]:
            seen.extend(derived)
            return super()._write(connection, derived, now, stored, log_closed=log_closed)

    cases = Spy(migrated, clock(), FakeCatalog({ITEM: Limits(7, 10, 2)}), now=now, batch_size=7)
    # 12 cases reach warning on 10-22 00:00; 38 accepted later reach it well after.
    events = [accepted(f"D{n:02}") for n in range(12)]
    events += [accepted(f"L{n:02}", "2018-10-19 09:00") for n in range(38)]
    assert cases.refresh(store(migrated, events)) == 50
    before = case_rows(migrated)

    seen.clear()
    now.set("2018-10-22 08:00")
    assert cases.advance() == 12
    assert sorted(seen) == [(DEPT, f"D{n:02}") for n in range(12)]
    after = case_rows(migrated)
    for case_id, row in after.items():
        if case_id.startswith("L"):
            assert row == before[case_id]
        else:
            assert (row["level"], row["updated_at"]) == ("warning", local("2018-10-22 08:00"))
    assert len(card_rows(migrated)) == 12


def test_writes_of_a_batch_are_a_statement_each_not_a_statement_a_row(migrated: Engine) -> None:
    # On SQLite the driver's executemany gives Python's GIL up around every row, and beside
    # a busy thread (the server's requests, beside the advancing job) each row then waits up
    # to 5 ms for it, under the write lock: the writes go as multi-row statements instead.
    now = FakeNow("2018-10-19 12:00")
    cases = projector(migrated, now)
    keys = store(migrated, [accepted(f"W{n:02}") for n in range(16)])  # a power of two
    statements: list[tuple[str, bool]] = []

    @sqlalchemy_event.listens_for(migrated, "before_cursor_execute")
    def note(_conn: Any, _cursor: Any, sql: str, _params: Any, _ctx: Any, many: bool) -> None:
        statements.append((sql.split(" (")[0].split(" SET")[0], many))

    assert cases.refresh(keys) == 16  # 16 new rows
    now.set("2018-10-22 08:00")
    assert cases.advance() == 16  # 16 rows where only time passing changed something
    assert len(card_rows(migrated)) == 16
    written = [entry for entry in statements if not entry[0].startswith(("SELECT", "BEGIN"))]
    assert not [sql for sql, many in written if many], written
    assert [sql for sql, _ in written].count("INSERT INTO cases") == 1
    assert [sql for sql, _ in written].count("UPDATE cases") == 1
    assert [sql for sql, _ in written].count("INSERT INTO cards") == 1


def test_advance_takes_exactly_a_batch_of_due_cases_in_one_transaction(
    migrated: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = FakeNow("2018-10-19 12:00")
    catalog = FakeCatalog({ITEM: Limits(7, 10, 2)})
    cases = CaseProjector(migrated, clock(), catalog, now=now, batch_size=12)
    assert cases.refresh(store(migrated, [accepted(f"D{n:02}") for n in range(12)])) == 12
    transactions = 0
    exclusive = server.cases.exclusive

    def counted(engine: Engine, key: int, **options: bool) -> Any:
        nonlocal transactions
        transactions += 1
        return exclusive(engine, key, **options)

    monkeypatch.setattr(server.cases, "exclusive", counted)
    now.set("2018-10-22 08:00")
    assert cases.advance() == 12
    assert transactions == 1  # not a second one to find nothing more due


# -- closed cases, late events, invalid cases --------------------------------------------


def test_a_closed_case_gets_its_timeliness_and_keeps_its_cards(migrated: Engine) -> None:
    now = FakeNow("2018-11-05 12:00")
    cases = projector(migrated, now)
    keys = store(
        migrated,
        [
            accepted("E"),
            ev("E", 2, "completed", "2018-10-19 16:00", result="approved"),
            accepted("O"),
            ev("O", 2, "completed", "2018-10-24 16:00", result="approved"),
            accepted("L"),
            ev("L", 2, "completed", "2018-10-26 09:00", result="denied"),
        ],
    )
    assert cases.refresh(keys) == 3
    rows = case_rows(migrated)
    assert {k: (r["state"], r["level"], r["timeliness"]) for k, r in rows.items()} == {
        "E": ("closed", "completed", "early"),
        "L": ("closed", "completed", "late"),
        "O": ("closed", "completed", "on_time"),
    }
    assert rows["L"]["closed_at"] == local("2018-10-26 09:00")
    assert rows["L"]["card"] == "yellow"
    assert all(r["next_change_at"] is None for r in rows.values())
    assert card_rows(migrated) == [
        ("L", "warning", local("2018-10-22"), None, None),
        ("L", "yellow", local("2018-10-25"), None, None),
        ("O", "warning", local("2018-10-22"), None, None),
    ]


def test_a_late_completion_voids_a_card_it_shows_was_never_reached(migrated: Engine) -> None:
    now = FakeNow("2018-10-26 12:00")
    cases = projector(migrated, now)
    cases.refresh(store(migrated, [accepted("X1")]))
    assert [c[1] for c in card_rows(migrated)] == ["warning", "yellow"]

    late = ev("X1", 2, "completed", "2018-10-24 16:00", result="approved")
    assert cases.refresh(store(migrated, [late])) == 1
    row = case_rows(migrated)["X1"]
    assert (row["state"], row["timeliness"], row["card"]) == ("closed", "on_time", "warning")
    assert card_rows(migrated) == [
        ("X1", "warning", local("2018-10-22"), None, None),
        ("X1", "yellow", local("2018-10-25"), local("2018-10-26 12:00"), SUPERSEDED),
    ]


def test_an_extension_received_late_moves_and_revives_cards(migrated: Engine) -> None:
    now = FakeNow("2018-10-25 12:00")
    cases = projector(migrated, now)
    cases.refresh(store(migrated, [accepted("X1")]))
    extension = ev("X1", 2, "extended", "2018-10-19 10:00", days=3)
    cases.refresh(store(migrated, [extension]))
    # With 3 more days the promised due date is 10-29: warning moves to 10-25, and
    # the yellow card was never reached.
    assert card_rows(migrated) == [
        ("X1", "warning", local("2018-10-25"), None, None),
        ("X1", "yellow", local("2018-10-25"), local("2018-10-25 12:00"), SUPERSEDED),
    ]
    now.set("2018-10-30 12:00")
    assert cases.advance() == 1
    assert card_rows(migrated) == [
        ("X1", "warning", local("2018-10-25"), None, None),
        ("X1", "yellow", local("2018-10-30"), None, None),
    ]


def test_an_unknown_item_makes_the_case_invalid_not_the_batch(migrated: Engine) -> None:
    now = FakeNow("2018-10-26 12:00")
    cases = projector(migrated, now)
    keys = store(migrated, [accepted("U", item="nope-001"), accepted("X1")])
    assert cases.refresh(keys) == 2
    rows = case_rows(migrated)
    assert (rows["U"]["state"], rows["U"]["level"], rows["U"]["anomalies"]) == (
        INVALID,
        INVALID,
        1,
    )
    assert rows["U"]["next_change_at"] is None
    assert rows["U"]["accepted_at"] is None
    assert rows["X1"]["level"] == "yellow"

    # The catalog learns the item; a recompute repairs the case.
    cases.catalog.items["nope-001"] = Limits(7, 10, 2)  # type: ignore[attr-defined]
    assert cases.recompute() == 1
    assert case_rows(migrated)["U"]["level"] == "yellow"


def test_an_event_stamped_ahead_of_now_is_counted_when_it_comes_due(migrated: Engine) -> None:
    now = FakeNow("2018-10-15 09:59")
    cases = projector(migrated, now)
    cases.refresh(store(migrated, [accepted("X1")]))
    row = case_rows(migrated)["X1"]
    assert (row["state"], row["next_change_at"]) == (INVALID, local("2018-10-15 10:00"))
    now.set("2018-10-15 10:00")
    assert cases.advance() == 1
    assert case_rows(migrated)["X1"]["state"] == "open"


# -- recompute after a catalog change ----------------------------------------------------


def test_recompute_changes_open_cases_and_closed_ones_only_when_asked(
    migrated: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    now = FakeNow("2018-10-23 12:00")
    cases = projector(migrated, now)
    events = [accepted(f"O{n}") for n in range(5)]
    events += [accepted("C"), ev("C", 2, "completed", "2018-10-23 09:00", result="approved")]
    cases.refresh(store(migrated, events))
    assert case_rows(migrated)["C"]["timeliness"] == "early"

    cases.catalog.items[ITEM] = Limits(5, 10, 2)  # type: ignore[attr-defined]
    assert cases.recompute(batch_size=2) == 5
    rows = case_rows(migrated)
    assert {r["level"] for k, r in rows.items() if k != "C"} == {"yellow"}
    assert rows["C"]["timeliness"] == "early"  # closed: kept

    with caplog.at_level(logging.INFO, logger="server.cases"):
        assert cases.recompute(open_only=False, batch_size=2) == 1
    assert case_rows(migrated)["C"]["timeliness"] == "late"
    logged = [r.getMessage() for r in caplog.records if "closed case" in r.getMessage()]
    assert len(logged) == 1
    assert "zrzy/C" in logged[0]
    assert "'early', 'late'" in logged[0]


# -- the same events in any order --------------------------------------------------------


def story() -> list[CaseEvent]:
    return [
        accepted("A"),
        accepted("B"),
        ev("B", 2, "completed", "2018-10-23 11:00", result="approved"),
        accepted("C"),
        ev("C", 2, "extended", "2018-10-19 10:00", days=3),
        ev("C", 3, "completed", "2018-10-29 15:00", result="approved"),
        accepted("D"),
        ev("D", 2, "suspended", "2018-10-17 10:00", days=5, reason="hearing"),
        ev("D", 3, "resumed", "2018-10-22 10:00"),
        accepted("E", promised_days=3, legal_days=5),
        ev("E", 2, "withdrawn", "2018-10-26 10:00"),
        accepted("F"),
        ev("F", 2, "suspended", "2018-10-30 10:00", days=2, reason="testing"),
        accepted("U", item="nope-001"),
    ]


@pytest.mark.parametrize("seed", range(4))
def test_the_same_events_in_any_order_and_batches_give_the_same_state(
    migrated: Engine, seed: int
) -> None:
    now = FakeNow("2018-11-05 12:00")
    cases = projector(migrated, now)

    events = story()
    cases.refresh(store(migrated, events))
    reference = case_rows(migrated), card_rows(migrated)
    assert reference[0]["D"]["level"] == "red"
    assert reference[0]["F"]["level"] == "suspended"

    with migrated.begin() as connection:
        for table in (tables.events, tables.cases, tables.cards):
            connection.execute(delete(table))

    rng = random.Random(seed)
    shuffled = events * 2  # every event sent twice: duplicates change nothing
    rng.shuffle(shuffled)
    while shuffled:
        size = rng.randint(1, 6)
        batch, shuffled = shuffled[:size], shuffled[size:]
        cases.refresh(store(migrated, batch))
    assert case_rows(migrated) == reference[0]
    assert card_rows(migrated, issued_only=True) == reference[1]
    assert all(c[4] == SUPERSEDED for c in card_rows(migrated) if c[3] is not None)
