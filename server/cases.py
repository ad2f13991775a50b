"""`CaseProjector`: each case's state, derived by the server from its stored events.

    refresh(keys)      re-derive the named cases (after their events arrived)
    advance()          the scheduled job: only the cases whose next change is due
    recompute(...)     every open case, in batches (after a catalog or calendar change);
                       closed cases too only when asked, each change logged; an
                       optional `progress` callback sees a `Recomputed` after each batch
    void_card(...)     void one card for a reason of its own (an upheld appeal)

The server never trusts a level an agent computed: a case's row in `cases` is
always `Clock.evaluate` over *all* its stored events, at the projector's
`now()`. The same events in any arrival order give the same row.

Cards. A card (warning, yellow, red) is recorded in `cards` with the instant
the clock says it was reached and never deleted; one the case's events, as
later received, no longer justify is voided as `SUPERSEDED` (server.casecards).

Schedules. Deriving an open case also plans its next changes as time passes
(server.schedules); `advance()` applies the step due from the row, and derives
from the events only a case without one or with events waiting in the queue.

Invalid cases. A case whose events name an item the catalog does not know, or
whose dates fall outside the calendar's window, or that has no acceptance yet,
is stored with state and level ``invalid`` (no due dates, no cards, no next
change) and logged; the rest of the batch goes on. `recompute()` includes
invalid cases, so fixing the catalog or calendar and recomputing repairs them.

Daily counts. In the same transaction the projector keeps `daily_counts`, what
the figures add up (server.dailycounts): it adds each changed case's counts as
now derived and takes away those it had as stored.

Every call returns how many cases changed (a derived column; a schedule planned anew
under another configuration is written but not counted).
Each batch is one transaction; Core statements only. Every writer of `cases`,
`cards` and `daily_counts` holds the projection lock (`exclusive`): its reads
are current when it writes, whatever other threads, processes or servers do.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any, Final, Protocol

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Insert,
    String,
    Text,
    and_,
    bindparam,
    func,
    or_,
    select,
    tuple_,
)
from sqlalchemy.dialects import postgresql, sqlite

from casework.clock import CaseClock, Clock, Limits
from casework.errors import CalendarRangeError
from casework.events import CaseEvent
from server.cardvoids import void_card
from server.casecards import SUPERSEDED, CardWriter, Derived, KeyFilter
from server.dailycounts import COUNTED, PROJECTION_LOCK_KEY, Tally
from server.dailycounts import write as write_counts
from server.schedules import TIMED, Step, due_step, evaluator, moment, plan
from server.store import tables
from server.store.bulk import Bulk, BulkUpdate
from server.store.database import exclusive, start_writing
from server.storedevents import stored_event

__all__ = ["INVALID", "SUPERSEDED", "CaseProjector", "Catalog", "Derived", "Key", "Recomputed"]

logger = logging.getLogger(__name__)

#: State and level of a case the clock cannot evaluate (see the module docstring).
INVALID: Final = "invalid"

#: The derived columns of `cases` compared to tell whether a case changed.
DERIVED: Final = (
    "item",
    "state",
    "level",
    "accepted_at",
    "closed_at",
    "outcome",
    "timeliness",
    "promised_due",
    "legal_due",
    "card",
    "next_change_at",
    "anomalies",
)

#: Compared besides `DERIVED` to tell whether a case's row must be written.
COMPARED: Final = (*DERIVED, "schedule")
#: The columns time passing changes (server.schedules), and the others.
_TIMED: Final = (*TIMED, "schedule")
_UNTIMED: Final = tuple(c for c in COMPARED if c not in _TIMED)
#: The columns `advance()` reads of a due case, in order (then whether it is queued).
_FETCHED: Final = ("department", "case_id", *COMPARED)

# A row's columns as one tuple, picked in C: comparing two is one comparison of tuples.
_compared = itemgetter(*COMPARED)
_derived = itemgetter(*DERIVED)
_untimed = itemgetter(*_UNTIMED)
_counted = itemgetter(*COUNTED)

Key = tuple[str, str]
Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Recomputed:
    """How far a `CaseProjector.recompute` has got: batches and cases read so far, how
    many of those cases changed, and how many of the changed ones are closed."""

    batches: int = 0
    looked_at: int = 0
    changed: int = 0
    closed_changed: int = 0


class Catalog(Protocol):
    """Where the projector finds an item's limits (a `Deployment` is one)."""

    def limits(self, code: str) -> Limits:
        """The item's limits; raises `LookupError` for an unknown code."""
        ...


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _chunks(keys: Iterable[Key], size: int) -> Iterator[list[Key]]:
    chunk: list[Key] = []
    for key in keys:
        chunk.append(key)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _key_filter(engine: Engine) -> KeyFilter:
    """``(department, case_id) IN (SELECT ... the keys)``, the keys sent as one or two
    parameters, so that a whole batch is one statement the database answers through
    the (department, case_id) index: SQLite reads them from a JSON array
    (``json_each``), PostgreSQL from two arrays (``unnest``). A plain list of pairs
    makes SQLite scan the whole table."""
    name = engine.dialect.name
    if name == "postgresql":

        def among_pg(department: Any, case_id: Any, keys: Sequence[Key]) -> ColumnElement[bool]:
            pairs = (
                func.unnest(
                    bindparam(None, [d for d, _ in keys], type_=postgresql.ARRAY(String())),
                    bindparam(None, [i for _, i in keys], type_=postgresql.ARRAY(String())),
                )
                .table_valued("department", "case_id")
                .render_derived(name="pairs")
            )
            return tuple_(department, case_id).in_(select(pairs.c.department, pairs.c.case_id))

        return among_pg
    if name == "sqlite":

        def among_lite(department: Any, case_id: Any, keys: Sequence[Key]) -> ColumnElement[bool]:
            each = func.json_each(bindparam(None, json.dumps(keys), type_=Text())).table_valued(
                "value"
            )
            pair = (
                func.json_extract(each.c.value, "$[0]"),
                func.json_extract(each.c.value, "$[1]"),
            )
            return tuple_(department, case_id).in_(select(*pair))

        return among_lite
    raise NotImplementedError(f"esup stores cases in SQLite or PostgreSQL, not {name!r}")


def _upsert_case(engine: Engine) -> Insert:
    """``INSERT INTO cases ... ON CONFLICT (department, case_id) DO UPDATE`` for the dialect."""
    name = engine.dialect.name
    if name == "postgresql":
        pg = postgresql.insert(tables.cases)
        columns = {c: pg.excluded[c] for c in (*COMPARED, "updated_at")}
        return pg.on_conflict_do_update(index_elements=["department", "case_id"], set_=columns)
    if name == "sqlite":
        lite = sqlite.insert(tables.cases)
        columns = {c: lite.excluded[c] for c in (*COMPARED, "updated_at")}
        return lite.on_conflict_do_update(index_elements=["department", "case_id"], set_=columns)
    raise NotImplementedError(f"esup stores cases in SQLite or PostgreSQL, not {name!r}")


def _item_of(events: Sequence[CaseEvent]) -> str:
    """The case's item: its earliest acceptance's, else its earliest event's (order-free)."""
    accepted = [e for e in events if e.type == "accepted"]
    return min(accepted or events, key=lambda e: (e.ts, e.event_id)).item


def _invalid_row(item: str, anomalies: int, next_change_at: datetime | None = None) -> Row:
    row: Row = dict.fromkeys(COMPARED)
    row.update(item=item, state=INVALID, level=INVALID, anomalies=anomalies)
    row["next_change_at"] = next_change_at
    return row


class CaseProjector:
    """Keeps the `cases` and `cards` tables on `engine` up to date with the events.

    `clock` evaluates cases (`Clock.for_deployment`); `catalog` gives each
    item's limits (the `Deployment`); `config` names that configuration (its
    fingerprint, server.reconfigure): a schedule planned under another one is
    not followed. `now` returns the current instant, timezone-aware.
    `batch_size` cases are read, evaluated and written per transaction.
    """

    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        catalog: Catalog,
        *,
        config: str = "",
        now: Callable[[], datetime] = _utcnow,
        batch_size: int = 1000,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        self.engine = engine
        self.clock = clock
        self.catalog = catalog
        self.config = config
        self.now = now
        self.batch_size = batch_size
        self._configured = threading.Lock()
        dialect = engine.dialect
        self._upsert_case = Bulk(dialect, _upsert_case(engine), [c.name for c in tables.cases.c])
        keys = ("department", "case_id")
        self._update_timed = BulkUpdate(dialect, tables.cases, keys, (*_TIMED, "updated_at"))
        self._among = _key_filter(engine)
        self._cards = CardWriter(engine, self._among)

    def reconfigure(self, clock: Clock, catalog: Catalog, config: str = "") -> None:
        """Derive with `clock` and `catalog` (named `config`) from the next batch on (a
        reloaded config/)."""
        with self._configured:
            self.clock, self.catalog, self.config = clock, catalog, config

    # -- the three entry points -------------------------------------------------------

    def refresh(self, keys: Iterable[Key]) -> int:
        """Re-derive the cases `keys` ((department, case_id) pairs) from all their events.

        A key with no stored event is skipped. Returns how many cases changed.
        """
        now = self.now()
        unique = dict.fromkeys(keys)
        return sum(self._project(chunk, now) for chunk in _chunks(unique, self.batch_size))

    def advance(self) -> int:
        """Re-evaluate the cases whose next change (`next_change_at`) is due at `now()`.

        Reads only those cases (an index range scan), so its cost follows the
        number of due cases, not of open ones. Returns how many changed.
        """
        now = self.now()
        with self._configured:
            config = self.config  # steps planned under another configuration are not taken
        c, q = tables.cases.c, tables.projection_queue.c
        queued = (q.department == c.department) & (q.case_id == c.case_id)
        due = (
            select(
                c.department,
                c.case_id,
                *(c[name] for name in COMPARED),
                q.version.is_not(None).label("queued"),
            )
            .select_from(tables.cases.outerjoin(tables.projection_queue, queued))
            .where(c.next_change_at <= now)
            .order_by(c.next_change_at)
            # One row more than a batch: whether another batch is due, without asking again.
            .limit(self.batch_size + 1)
        )
        changed = 0
        seen: set[Key] = set()
        while True:
            with exclusive(self.engine, PROJECTION_LOCK_KEY, reads_first=True) as connection:
                # Read under the lock: these rows are what the batch replaces.
                found = connection.execute(due).all()
                stored: dict[Key, Row] = {}
                derived: dict[Key, Derived] = {}
                from_events: list[Key] = []
                for fetched in found[: self.batch_size]:
                    key = (fetched[0], fetched[1])
                    if key in seen:
                        continue
                    # Tuples zipped with the names (all but the last, queued): the result's
                    # mappings cost more.
                    row = stored[key] = dict(zip(_FETCHED, fetched, strict=False))
                    # A case with events waiting in the queue is derived from them.
                    step = None if fetched[-1] else due_step(row["schedule"], now, config)
                    if step is None:
                        from_events.append(key)
                    else:
                        derived[key] = _stepped(row, *step)
                if not stored:
                    return changed
                seen.update(stored)
                if from_events:
                    derived.update(self._derive(self._events(connection, from_events), now))
                changed += self._write(connection, derived, now, stored)[0]
            if len(found) <= self.batch_size:  # that was every case due
                return changed

    def recompute(
        self,
        *,
        open_only: bool = True,
        batch_size: int | None = None,
        progress: Callable[[Recomputed], None] | None = None,
    ) -> int:
        """Re-derive every stored case that is not closed (open and invalid ones), in batches
        of `batch_size` (default: the projector's), after a catalog or calendar change.

        With `open_only=False` closed cases are recomputed too, and each closed
        case that changes is logged with its columns before and after.
        `progress`, if given, is called after every batch with the totals so far.
        Returns how many cases changed.
        """
        size = batch_size or self.batch_size
        now = self.now()
        c = tables.cases.c
        done = Recomputed()
        last: Key | None = None
        while True:
            query = select(c.department, c.case_id).order_by(c.department, c.case_id).limit(size)
            if open_only:
                query = query.where(c.state != "closed")
            if last is not None:
                query = query.where(
                    or_(c.department > last[0], and_(c.department == last[0], c.case_id > last[1]))
                )
            with self.engine.connect() as connection:
                keys: list[Key] = [(d, i) for d, i in connection.execute(query)]
            if not keys:
                return done.changed
            changed, closed = self._project_counted(keys, now, log_closed=not open_only)
            done = Recomputed(
                done.batches + 1,
                done.looked_at + len(keys),
                done.changed + changed,
                done.closed_changed + closed,
            )
            if progress is not None:
                progress(done)
            last = keys[-1]

    def void_card(self, department: str, case_id: str, level: str, *, reason: str) -> bool:
        """Void the case's unvoided `level` card for `reason` (an upheld appeal), at `now()`.

        The figures' daily counts change with it, in the same transaction. Such a
        card stays voided whatever events arrive later. False when the case has
        no unvoided card of that level.
        """
        if not reason or reason == SUPERSEDED:
            raise ValueError("a card is voided with a reason of its own, not the clock's")
        with exclusive(self.engine, PROJECTION_LOCK_KEY) as connection:
            return void_card(
                connection,
                department,
                case_id,
                level,
                reason=reason,
                at=self.now(),
                zone=self.clock.tz,
            )

    # -- one batch --------------------------------------------------------------------

    def _project(self, keys: Sequence[Key], now: datetime, *, log_closed: bool = False) -> int:
        """Evaluate and write one batch in one transaction; how many cases changed."""
        return self._project_counted(keys, now, log_closed=log_closed)[0]

    def _project_counted(
        self, keys: Sequence[Key], now: datetime, *, log_closed: bool = False
    ) -> tuple[int, int]:
        """`_project`, also counting the changed cases that were stored as closed."""
        with exclusive(self.engine, PROJECTION_LOCK_KEY, reads_first=True) as connection:
            stored = self._stored_cases(connection, keys)
            derived = self._derive(self._events(connection, keys), now)
            return self._write(connection, derived, now, stored, log_closed=log_closed)

    def _write(
        self,
        connection: Connection,
        derived: dict[Key, Derived],
        now: datetime,
        stored: dict[Key, Row],
        *,
        log_closed: bool = False,
    ) -> tuple[int, int]:
        """Write the cases as `derived`, stored as `stored` (read under the lock); how many
        changed, and how many of those were stored closed."""
        closed = changed = 0
        rows: list[Row] = []
        timed: list[Row] = []  # only the columns time passing changes differ
        for key, (row, _) in derived.items():
            before = stored.get(key)
            if before is not None and _compared(before) == _compared(row):
                continue
            written = {"department": key[0], "case_id": key[1], **row, "updated_at": now}
            if before is not None and _untimed(before) == _untimed(row):
                timed.append(written)
            else:
                rows.append(written)
            if before is not None and _derived(before) == _derived(row):
                continue  # only the plan is new (another configuration): not a change
            changed += 1
            if before is not None and before["state"] == "closed":
                closed += 1
                if log_closed:
                    diff = {c: (before[c], row[c]) for c in DERIVED if before[c] != row[c]}
                    logger.info("recompute changed closed case %s/%s: %s", *key, diff)
        cards = self._cards.read(connection, list(derived))
        start_writing(connection)  # all is read and derived: SQLite's write lock from here
        self._upsert_case.execute(connection, rows)
        self._update_timed.execute(connection, timed)
        cards_before, cards_after = self._cards.write(connection, derived, now, cards)
        tally = Tally(self.clock.tz)
        for key, (row, _) in derived.items():
            before = stored.get(key)
            had = cards_before.get(key, {})
            has = cards_after.get(key, {})
            if before is not None and _counted(before) == _counted(row):
                if had != has:  # time passing: only the cards' counts change
                    tally.change_cards(key[0], row, had, has)
                continue
            if before is not None:
                tally.add_case(-1, key[0], before, had)
            tally.add_case(1, key[0], row, has)
        write_counts(connection, tally)
        return changed, closed

    def _events(self, connection: Connection, keys: Sequence[Key]) -> dict[Key, list[CaseEvent]]:
        """Each key's stored events, oldest first; keys with none are left out.

        The cases come grouped by department in the order `keys` first names each
        department, and within one in the order of their first stored event.
        """
        e = tables.events.c
        query = (
            select(e.department, e.case_id, e.body)
            .where(self._among(e.department, e.case_id, keys))
            .order_by(e.id)
        )
        found: dict[Key, list[CaseEvent]] = defaultdict(list)
        for department, case_id, body in connection.execute(query):
            source = f"stored event of {department}/{case_id}"
            found[department, case_id].append(stored_event(body, source))
        rank = {department: n for n, department in enumerate(dict.fromkeys(d for d, _ in keys))}
        return dict(sorted(found.items(), key=lambda item: rank[item[0][0]]))

    def _stored_cases(self, connection: Connection, keys: Sequence[Key]) -> dict[Key, Row]:
        c = tables.cases.c
        query = select(c.department, c.case_id, *(c[name] for name in COMPARED)).where(
            self._among(c.department, c.case_id, keys)
        )
        stored: dict[Key, Row] = {}
        for row in connection.execute(query).mappings():
            stored[row["department"], row["case_id"]] = dict(row)
        return stored

    def _derive(self, events: dict[Key, list[CaseEvent]], now: datetime) -> dict[Key, Derived]:
        """Each case's `cases` columns (with its schedule) and its cards ({level: reached_at})
        at `now`."""
        with self._configured:  # one configuration for the whole batch
            clock, catalog, config = self.clock, self.catalog, self.config
        out: dict[Key, Derived] = {}
        todo: list[tuple[Key, list[CaseEvent], Limits, str]] = []
        for key, case_events in events.items():
            item = _item_of(case_events)
            try:
                limits = catalog.limits(item)
            except LookupError as exc:
                logger.warning("case %s/%s is invalid: %s", *key, exc)
                out[key] = (_invalid_row(item, 1), {})
                continue
            todo.append((key, case_events, limits, item))
        results: list[CaseClock | CalendarRangeError]
        try:
            results = list(clock.evaluate_many([(ev, lim) for _, ev, lim, _ in todo], now))
        except CalendarRangeError:  # rare: find the case(s) one by one
            results = [_evaluate_one(clock, key, ev, lim, now) for key, ev, lim, _ in todo]
        for (key, case_events, limits, item), result in zip(todo, results, strict=True):
            row, _ = out[key] = self._row(item, case_events, result, now)
            if row["state"] == "open" and row["next_change_at"] is not None:
                first = moment(item, case_events, result, now.timestamp())
                if first is not None:
                    at = evaluator(clock, item, case_events, limits)
                    row["schedule"] = plan(first, at, config=config)
        return out

    @staticmethod
    def _row(
        item: str, events: list[CaseEvent], result: CaseClock | CalendarRangeError, now: datetime
    ) -> tuple[Row, dict[str, datetime]]:
        # Events stamped after `now` (within the allowed clock skew) are not yet
        # counted: the case must be looked at again when the first of them comes due.
        pending = min((e.at for e in events if e.at > now), default=None)
        if isinstance(result, CalendarRangeError):
            return _invalid_row(item, 1, pending), {}
        if result.state == INVALID:
            return _invalid_row(item, len(result.anomalies), pending), {}
        nxt = result.next_change
        if pending is not None and (nxt is None or pending < nxt):
            nxt = pending
        row: Row = {
            "item": item,
            "state": result.state,
            "level": result.level,
            "accepted_at": result.accepted_at,
            "closed_at": result.closed_at,
            "outcome": result.outcome,
            "timeliness": result.timeliness,
            "promised_due": result.promised_due,
            "legal_due": result.legal_due,
            "card": result.card,
            "next_change_at": nxt,
            "anomalies": len(result.anomalies),
            "schedule": None,
        }
        return row, {card.level: card.at for card in result.cards}


def _stepped(stored: Row, step: Step, rest: str | None) -> Derived:
    """The case stored as `stored` once its schedule's `step` has begun."""
    row = stored.copy()  # may hold more than COMPARED (the key): written or ignored alike
    row["level"], row["card"], row["next_change_at"] = step.level, step.card, step.next_change_at
    row["schedule"] = rest
    return row, step.cards


def _evaluate_one(
    clock: Clock, key: Key, events: list[CaseEvent], limits: Limits, now: datetime
) -> CaseClock | CalendarRangeError:
    try:
        return clock.evaluate(events, limits, now)
    except CalendarRangeError as exc:
        logger.warning("case %s/%s is invalid: %s", *key, exc)
        return exc
