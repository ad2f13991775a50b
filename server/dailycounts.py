"""Daily counts: what the figures add up, per department, item and local day.

    Tally                              count changes by (department, item, day)
    Tally.add_case(sign, department, case, cards)
    Tally.change_cards(department, case, had, has)
    write(connection, tally)           add a tally to `daily_counts` (one statement)
    rebuild(engine, zone)              the whole table again from `cases` and `cards`
    ensure_daily_counts(engine, zone)  rebuild when built for another zone, or never

Figures are asked for any period [start, end) of local dates, so every count
they need is kept per local day (in the deployment's zone) and a period is a
sum over days. Flows are counted on the day they happen; stocks (cases open or
overdue at an instant) as the difference of what began and what ended before
it. For one case, valid (state not ``invalid``), accepted on day A:

    received        +1 on A
    left_open       +1 on max(A, C) when it closed on day C; open at midnight of D
                    is then the sum over days before D of received - left_open
    completed       +1 on C when it closed completed or withdrawn
    withdrawn, early, on_time, late
                    +1 on C by outcome and timeliness (``immediate`` counts on time)
    overdue_began   +1 on O = max(A, day of its first unvoided yellow or red card)
    overdue_ended   +1 on max(O, C) when it also closed; overdue at midnight of D is
                    the sum over days before D of overdue_began - overdue_ended
    warnings, yellow_cards, red_cards
                    +1 on the day each unvoided card was reached

These are exactly the figures' definitions (docs/design.md, "Figures"), because a
period's bounds are local midnights: an instant is before midnight of D exactly
when its local day is before D. Invalid cases count nowhere (figures count them
apart, from `cases`).

The projector keeps the table in the same transaction that writes a case's row
and cards: it adds the case's counts as now derived and subtracts them as they
were stored. `rebuild` computes the table from scratch (after the zone changes,
or to check the running sums; tests compare the two).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from datetime import date, datetime, tzinfo
from typing import Any, Final

from sqlalchemy import Connection, Engine, Insert, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from server.store import tables
from server.store.bulk import Bulk
from server.store.database import exclusive
from server.store.state import StateStore

__all__ = [
    "COUNTED",
    "COUNTS",
    "PROJECTION_LOCK_KEY",
    "ZONE_KEY",
    "Tally",
    "ensure_daily_counts",
    "local_day",
    "rebuild",
    "write",
]

logger = logging.getLogger(__name__)

COUNTS: Final = tables.DAILY_COUNTS
_INDEX: Final = {name: n for n, name in enumerate(COUNTS)}
_CARD_COLUMN: Final = {"warning": "warnings", "yellow": "yellow_cards", "red": "red_cards"}
_TIMELINESS_COLUMN: Final = {
    "early": "early",
    "on_time": "on_time",
    "immediate": "on_time",
    "late": "late",
}

#: The `cases` columns a case's daily counts depend on (with its unvoided cards).
COUNTED: Final = ("state", "item", "accepted_at", "closed_at", "outcome", "timeliness")

#: The `server_state` key naming the zone `daily_counts` was built in.
ZONE_KEY: Final = "daily_counts_zone"

Slot = tuple[str, str, date]


def local_day(instant: datetime, zone: tzinfo) -> date:
    """The local date of an aware instant in `zone`."""
    return instant.astimezone(zone).date()


def _overdue_at(cards: Mapping[str, datetime]) -> datetime | None:
    """When a case became overdue: its first unvoided yellow or red card."""
    return min((at for lv, at in cards.items() if lv in ("yellow", "red")), default=None)


class Tally:
    """Changes to `daily_counts`, by (department, item, day): a list of len(COUNTS) ints."""

    __slots__ = ("slots", "zone")

    def __init__(self, zone: tzinfo) -> None:
        self.zone = zone
        self.slots: dict[Slot, list[int]] = {}

    def _bump(self, department: str, item: str, day: date, column: str, sign: int) -> None:
        slot = (department, item, day)
        counts = self.slots.get(slot)
        if counts is None:
            counts = self.slots[slot] = [0] * len(COUNTS)
        counts[_INDEX[column]] += sign

    def add_case(
        self,
        sign: int,
        department: str,
        case: Mapping[Any, Any],
        cards: Mapping[str, datetime],
    ) -> None:
        """Add (`sign` 1) or take away (-1) one case's counts.

        `case` holds the `cases` columns state, item, accepted_at, closed_at,
        outcome and timeliness; `cards` its unvoided cards, level -> reached_at.
        """
        accepted_at = case["accepted_at"]
        if case["state"] == "invalid" or accepted_at is None:
            return
        zone = self.zone
        item = case["item"]
        accepted = local_day(accepted_at, zone)
        self._bump(department, item, accepted, "received", sign)
        closed_at = case["closed_at"]
        closed = None if closed_at is None else local_day(closed_at, zone)
        if closed is not None:
            self._bump(department, item, max(accepted, closed), "left_open", sign)
            outcome = case["outcome"]
            if outcome in ("completed", "withdrawn"):
                self._bump(department, item, closed, "completed", sign)
            if outcome == "withdrawn":
                self._bump(department, item, closed, "withdrawn", sign)
            elif outcome == "completed":
                column = _TIMELINESS_COLUMN.get(case["timeliness"] or "")
                if column is not None:
                    self._bump(department, item, closed, column, sign)
        self._add_cards(sign, department, item, accepted, closed, cards)

    def change_cards(
        self,
        department: str,
        case: Mapping[Any, Any],
        had: Mapping[str, datetime],
        has: Mapping[str, datetime],
    ) -> None:
        """A case's unvoided cards went from `had` to `has`, nothing else `COUNTED` changed
        (time passing): what `add_case` of the case before and after would add, touching
        only the cards that changed."""
        accepted_at = case["accepted_at"]
        if case["state"] == "invalid" or accepted_at is None:
            return
        zone = self.zone
        item = case["item"]
        for sign, cards, others in ((-1, had, has), (1, has, had)):
            for level, reached_at in cards.items():
                if others.get(level) != reached_at:
                    day = local_day(reached_at, zone)
                    self._bump(department, item, day, _CARD_COLUMN[level], sign)
        if _overdue_at(had) != _overdue_at(has):
            closed_at = case["closed_at"]
            accepted = local_day(accepted_at, zone)
            closed = None if closed_at is None else local_day(closed_at, zone)
            self._add_overdue(-1, department, item, accepted, closed, had)
            self._add_overdue(1, department, item, accepted, closed, has)

    def _add_cards(
        self,
        sign: int,
        department: str,
        item: str,
        accepted: date,
        closed: date | None,
        cards: Mapping[str, datetime],
    ) -> None:
        """The counts that follow from a case's unvoided cards (overdue, cards by level)."""
        self._add_overdue(sign, department, item, accepted, closed, cards)
        for level, reached_at in cards.items():
            day = local_day(reached_at, self.zone)
            self._bump(department, item, day, _CARD_COLUMN[level], sign)

    def _add_overdue(
        self,
        sign: int,
        department: str,
        item: str,
        accepted: date,
        closed: date | None,
        cards: Mapping[str, datetime],
    ) -> None:
        """The overdue counts that follow from a case's unvoided cards."""
        overdue_at = _overdue_at(cards)
        if overdue_at is not None:
            began = max(accepted, local_day(overdue_at, self.zone))
            self._bump(department, item, began, "overdue_began", sign)
            if closed is not None:
                self._bump(department, item, max(began, closed), "overdue_ended", sign)

    def rows(self) -> Iterator[dict[str, Any]]:
        """The non-zero changes as `daily_counts` rows."""
        for (department, item, day), counts in self.slots.items():
            if any(counts):
                yield {
                    "department": department,
                    "item": item,
                    "day": day,
                    **dict(zip(COUNTS, counts, strict=True)),
                }


def _add_to_counts(connection: Connection) -> Insert:
    """``INSERT ... ON CONFLICT DO UPDATE SET n = n + excluded.n`` for the dialect."""
    d = tables.daily_counts
    name = connection.dialect.name
    if name == "postgresql":
        pg = postgresql.insert(d)
        return pg.on_conflict_do_update(
            index_elements=["department", "item", "day"],
            set_={c: d.c[c] + pg.excluded[c] for c in COUNTS},
        )
    if name == "sqlite":
        lite = sqlite.insert(d)
        return lite.on_conflict_do_update(
            index_elements=["department", "item", "day"],
            set_={c: d.c[c] + lite.excluded[c] for c in COUNTS},
        )
    raise NotImplementedError(f"esup keeps its counts in SQLite or PostgreSQL, not {name!r}")


_ADDERS: dict[str, Bulk] = {}


def write(connection: Connection, tally: Tally) -> int:
    """Add `tally` to `daily_counts` inside the caller's transaction; rows touched."""
    rows = list(tally.rows())
    name = connection.dialect.name
    adder = _ADDERS.get(name)
    if adder is None:
        columns = ["department", "item", "day", *COUNTS]
        adder = _ADDERS[name] = Bulk(connection.dialect, _add_to_counts(connection), columns)
    adder.execute(connection, rows)
    return len(rows)


def _unvoided_cards(
    connection: Connection,
) -> Iterator[tuple[tuple[str, str], dict[str, datetime]]]:
    """Every case's unvoided cards, in (department, case_id) order."""
    k = tables.cards.c
    query = (
        select(k.department, k.case_id, k.level, k.reached_at)
        .where(k.voided_at.is_(None))
        .order_by(k.department, k.case_id)
    )
    key: tuple[str, str] | None = None
    cards: dict[str, datetime] = {}
    streamed = {"yield_per": 10_000}
    for department, case_id, level, reached_at in connection.execute(
        query, execution_options=streamed
    ):
        if (department, case_id) != key:
            if key is not None:
                yield key, cards
            key, cards = (department, case_id), {}
        cards[level] = reached_at
    if key is not None:
        yield key, cards


#: The lock every writer of `cases`, `cards` and `daily_counts` takes (`exclusive`):
#: "esupprj1" read as a big-endian signed 64-bit integer. Fixed forever.
PROJECTION_LOCK_KEY: Final = int.from_bytes(b"esupprj1", "big", signed=True)


def rebuild(engine: Engine, zone: tzinfo) -> int:
    """Compute `daily_counts` again from `cases` and `cards`, in one transaction holding
    the projection lock; rows written."""
    c = tables.cases.c
    tally = Tally(zone)
    columns = (c.department, c.case_id, c.state, c.item, c.accepted_at, c.closed_at)
    query = (
        select(*columns, c.outcome, c.timeliness)
        .where(c.state != "invalid")
        .order_by(c.department, c.case_id)
    )
    with exclusive(engine, PROJECTION_LOCK_KEY) as connection:
        cards = _unvoided_cards(connection)
        pending = next(cards, None)
        streamed = {"yield_per": 10_000}
        for row in connection.execute(query, execution_options=streamed).mappings():
            key = (row["department"], row["case_id"])
            while pending is not None and pending[0] < key:
                pending = next(cards, None)
            mine = pending[1] if pending is not None and pending[0] == key else {}
            tally.add_case(1, key[0], row, mine)
        connection.execute(delete(tables.daily_counts))
        rows = list(tally.rows())
        for start in range(0, len(rows), 10_000):
            connection.execute(tables.daily_counts.insert(), rows[start : start + 10_000])
    return len(rows)


def ensure_daily_counts(engine: Engine, zone: tzinfo) -> bool:
    """Rebuild `daily_counts` unless it was built in `zone`; True when it rebuilt."""
    state = StateStore(engine)
    name = str(zone)
    if state.get(ZONE_KEY) == name:
        return False
    logger.info("building the daily counts of the figures in the zone %s", name)
    written = rebuild(engine, zone)
    state.put(ZONE_KEY, name)
    logger.info("daily counts built: %d rows", written)
    return True
