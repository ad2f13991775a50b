"""Schedules: the level-advancing job applies planned steps, and gets what deriving gives.

The synthetic cases are the clock benchmark's (bench/clock.py): special
procedures resumed early, late or never, extensions, withdrawn and completed
cases, events stamped in UTC, duplicates. One database is moved through time
by `advance()` alone; at each checkpoint a second one derives every case from
its events at that instant, and both must hold the same rows and cards.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from scriptload import load_script
from sqlalchemy import Engine, select, update
from test_cases import TZ, FakeCatalog, FakeNow, clock, local
from test_figures import daily_counts

from casework.clock import Limits
from casework.events import CaseEvent
from server.cases import CaseProjector, Key
from server.dailycounts import rebuild
from server.schedules import MAX_STEPS, Moment, due_step, plan
from server.store import tables
from server.store.database import make_engine
from server.store.events import EventStore
from server.store.migrate import upgrade_engine
from server.store.queue import ProjectionQueue


def bench_clock() -> ModuleType:
    return load_script("bench/clock.py", "esup_bench_clock_schedules")


def synthetic(n: int, seed: int) -> tuple[list[CaseEvent], FakeCatalog]:
    bench = bench_clock()
    generator = bench.CaseGenerator(seed, *bench.package_days())
    cases = generator.cases(n)
    catalog = FakeCatalog({item: limits for _, item, limits in generator.catalog})
    return [event for case in cases for event in case.events], catalog


def rows_and_cards(engine: Engine) -> tuple[dict[Key, dict[str, Any]], list[tuple[Any, ...]]]:
    k = tables.cards.c
    shown = [column for column in tables.cases.c if column.name not in ("updated_at", "schedule")]
    with engine.connect() as connection:
        rows = {
            (row["department"], row["case_id"]): dict(row)
            for row in connection.execute(select(*shown)).mappings()
        }
        cards = connection.execute(
            select(
                k.department, k.case_id, k.level, k.reached_at, k.voided_at, k.void_reason
            ).order_by(k.department, k.case_id, k.level)
        ).all()
    return rows, [tuple(card) for card in cards]


class Counting(CaseProjector):
    """Counts the cases `advance()` derived from their events instead of stepping them."""

    from_events = 0

    def _events(self, connection: Any, keys: Any) -> dict[Key, list[CaseEvent]]:
        self.from_events += len(keys)
        return super()._events(connection, keys)


def project(engine: Engine, projector: CaseProjector) -> None:
    """What the projection worker does: derive the queued cases, then let them go."""
    queue = ProjectionQueue(engine)
    taken = queue.take(100_000)
    projector.refresh([(department, case_id) for department, case_id, _ in taken])
    queue.done(taken)


def instants(start: datetime, end: datetime, step_hours: int) -> Iterator[datetime]:
    at = start
    while at < end:
        yield at
        at += timedelta(hours=step_hours)


def test_advancing_by_schedules_gives_what_deriving_from_events_gives(
    migrated: Engine, tmp_path: Path
) -> None:
    events, catalog = synthetic(400, seed=11)
    reference = make_engine(f"sqlite:///{tmp_path / 'reference.db'}")
    try:
        upgrade_engine(reference)
        now = FakeNow("2026-05-20 09:00")
        moved = Counting(migrated, clock(), catalog, now=now)
        derived = CaseProjector(reference, clock(), catalog, now=now)
        keys = sorted({(e.department, e.case_id) for e in events})
        for engine in (migrated, reference):
            EventStore(engine).add_batch("agent-1", events)
        project(migrated, moved)
        moved.from_events = 0
        changed = 0
        # Every 19 hours (so through midnights and working hours alike) for two months, at
        # the exact instant of some planned changes, then by leaps that pass several.
        planned = sorted(
            {
                datetime.fromtimestamp(step[0], TZ)
                for row in rows_with_schedules(migrated)
                for step in json.loads(row)["steps"]
            }
        )
        leaps = [local("2026-08-20 12:00"), local("2026-09-30"), local("2027-03-01")]
        end = local("2026-07-20")
        walk = sorted({*instants(now(), end, 19), *(p for p in planned[::7] if p < end), *leaps})
        for n, at in enumerate(walk):
            now.at = at
            changed += moved.advance()
            if n % 8 == 0 or at in leaps:
                derived.refresh(keys)
                assert rows_and_cards(migrated) == rows_and_cards(reference), at
                running = daily_counts(migrated)  # kept up as the job went
                rebuild(migrated, TZ)
                assert daily_counts(migrated) == running, at
        assert changed > 300  # the walk moved many cases, some several times
        stepped = changed - moved.from_events
        assert stepped > changed // 2, (stepped, changed)  # mostly from schedules
    finally:
        reference.dispose()


def rows_with_schedules(engine: Engine) -> list[str]:
    c = tables.cases.c
    with engine.connect() as connection:
        return list(connection.execute(select(c.schedule).where(c.schedule.is_not(None))).scalars())


def accepted_and_projected(migrated: Engine, config: str = "") -> tuple[FakeNow, Counting]:
    """DESIGN.md's worked example, accepted 2018-10-15 10:00 (7/10 days) and projected."""
    now = FakeNow("2018-10-15 10:00")
    catalog = FakeCatalog({"zrzy-001": Limits(7, 10, 2)})
    cases = Counting(migrated, clock(), catalog, config=config, now=now)
    accepted = CaseEvent("X1-1", "X1", "zrzy", "zrzy-001", "accepted", local("2018-10-15 10:00"))
    EventStore(migrated).add_batch("agent-1", [accepted])
    project(migrated, cases)
    return now, cases


def test_a_case_with_events_in_the_queue_is_derived_from_them(migrated: Engine) -> None:
    now, cases = accepted_and_projected(migrated)
    # Completed before its warning: stored, queued, not yet projected.
    completed = CaseEvent("X1-2", "X1", "zrzy", "zrzy-001", "completed", local("2018-10-19 16:00"))
    EventStore(migrated).add_batch("agent-1", [completed])
    now.set("2018-10-22 08:00")
    cases.from_events = 0
    assert cases.advance() == 1
    assert cases.from_events == 1
    rows, cards = rows_and_cards(migrated)
    assert rows["zrzy", "X1"]["state"] == "closed"
    assert cards == []  # no warning card for a case its events show was closed


def test_a_case_stored_without_a_schedule_is_derived_and_gets_one(migrated: Engine) -> None:
    now, cases = accepted_and_projected(migrated)
    with migrated.begin() as connection:  # as a database upgraded from before schedules
        connection.execute(update(tables.cases).values(schedule=None))
    now.set("2018-10-22 08:00")
    cases.from_events = 0
    assert cases.advance() == 1
    assert cases.from_events == 1
    (schedule,) = rows_with_schedules(migrated)
    assert levels(schedule) == ["yellow", "red"]
    now.set("2018-10-25 08:00")
    cases.from_events = 0
    assert cases.advance() == 1
    assert cases.from_events == 0


def test_a_schedule_planned_under_another_configuration_is_not_followed(
    migrated: Engine,
) -> None:
    now, cases = accepted_and_projected(migrated, config="before")
    # A holiday added, say: the clock may now see the case otherwise.
    cases.reconfigure(clock(), FakeCatalog({"zrzy-001": Limits(8, 10, 2)}), "after")
    now.set("2018-10-22 08:00")
    cases.from_events = 0
    assert cases.advance() == 1
    assert cases.from_events == 1
    rows, _ = rows_and_cards(migrated)
    assert rows["zrzy", "X1"]["promised_due"] == date(2018, 10, 25)  # 8 working days
    (schedule,) = rows_with_schedules(migrated)
    assert json.loads(schedule)["config"] == "after"


def test_a_new_plan_alone_is_written_but_not_counted_as_a_change(migrated: Engine) -> None:
    _, cases = accepted_and_projected(migrated, config="before")
    cases.reconfigure(clock(), FakeCatalog({"zrzy-001": Limits(7, 10, 2)}), "after")
    assert cases.recompute() == 0  # nothing derived changed
    (schedule,) = rows_with_schedules(migrated)
    assert json.loads(schedule)["config"] == "after"  # planned anew all the same


# -- plan and due_step ------------------------------------------------------------------


def _moment(level: str, following: str | None, *reached: str, fixed: str = "open") -> Moment:
    levels = ("warning", "yellow", "red")
    cards = {levels[n]: local(at).timestamp() for n, at in enumerate(reached)}
    card = levels[len(reached) - 1] if reached else None
    later = None if following is None else local(following).timestamp()
    return Moment((fixed,), level, card, later, cards)


LADDER = {
    local("2018-10-22").timestamp(): _moment("warning", "2018-10-25", "2018-10-22"),
    local("2018-10-25").timestamp(): _moment("yellow", "2018-10-30", "2018-10-22", "2018-10-25"),
    local("2018-10-30").timestamp(): _moment("red", None, "2018-10-22", "2018-10-25", "2018-10-30"),
}
FIRST = _moment("normal", "2018-10-22")


def levels(schedule: str | None) -> list[str]:
    return [step[1] for step in json.loads(schedule or "")["steps"]]


def test_plan_follows_the_changes_until_none_is_left() -> None:
    assert levels(plan(FIRST, LADDER.get)) == ["warning", "yellow", "red"]
    assert levels(plan(FIRST, LADDER.get, limit=2)) == ["warning", "yellow"]
    assert MAX_STEPS >= 3


def test_plan_stops_before_a_step_that_changes_what_time_does_not() -> None:
    closed = dict(LADDER)
    closed[local("2018-10-25").timestamp()] = _moment(
        "yellow", "2018-10-30", "2018-10-22", fixed="closed"
    )
    assert levels(plan(FIRST, closed.get)) == ["warning"]
    redated = dict(LADDER)  # a card already reached moves: only deriving can say why
    redated[local("2018-10-25").timestamp()] = _moment(
        "yellow", "2018-10-30", "2018-10-23", "2018-10-25"
    )
    assert levels(plan(FIRST, redated.get)) == ["warning"]
    assert plan(FIRST, lambda at: None) is None  # the calendar ends


def test_due_step_takes_the_last_step_begun() -> None:
    schedule = plan(FIRST, LADDER.get)
    assert due_step(schedule, local("2018-10-21 23:59")) is None
    taken = due_step(schedule, local("2018-10-22"))  # the very instant counts
    assert taken is not None
    step, rest = taken
    assert (step.level, step.card, step.next_change_at) == (
        "warning",
        "warning",
        local("2018-10-25"),
    )
    assert step.cards == {"warning": local("2018-10-22")}
    assert levels(rest) == ["yellow", "red"]
    taken = due_step(rest, local("2018-11-30"))  # what is left, several steps at once
    assert taken is not None
    step, rest = taken
    assert (step.level, step.next_change_at, rest) == ("red", None, None)
    reached = [datetime.fromtimestamp(ts, TZ) for ts in LADDER]
    assert step.cards == dict(zip(("warning", "yellow", "red"), reached, strict=True))
    assert step.at == local("2018-10-30")


def test_due_step_follows_only_a_plan_of_the_same_configuration() -> None:
    schedule = plan(FIRST, LADDER.get, config="c1")
    assert due_step(schedule, local("2018-10-22"), "c1") is not None
    assert due_step(schedule, local("2018-10-22"), "c2") is None


def test_due_step_gives_up_past_the_last_planned_step() -> None:
    schedule = plan(FIRST, LADDER.get, limit=2)
    assert due_step(schedule, local("2018-10-29 12:00")) is not None  # yellow, red next
    assert due_step(schedule, local("2018-10-30")) is None  # red was not planned
    assert due_step(None, local("2018-10-30")) is None


@pytest.fixture(autouse=True)
def _quiet_bench_module() -> Iterator[None]:
    yield
    sys.modules.pop("esup_bench_clock_schedules", None)
