"""Live clocks: every open case's level, and a flag the moment it changes.

`LiveClocks` is an event sink of the agent's core: for each batch of good
events the core puts into its outbox it calls `record` inside the outbox
transaction (the events are stored beside the outbox rows, so a crash loses
neither or both) and `committed` after the commit (which wakes the loop).

The state lives in the agent's SQLite state database (agent.openstore), not
in memory: the events of each open case, and per case its level and `next_at`,
the instant its level changes next. The index on `next_at` is the priority
queue. One thread waits on a condition until the earliest `next_at` -- or
until `committed` wakes it early -- and then evaluates only the cases that are
due, with `casework.clock.Clock`. No tick scans every open case.

When a case reaches warning, yellow or red, or a special procedure overruns
its requested days (``procedure_overrun``), the flag is written to
``clock_flags`` -- whose key makes it impossible to raise twice, across
restarts too -- counted, logged, and a notice for the department's contact is
queued for agent.notify in the same transaction. A case closed (completed or
withdrawn) leaves the tables but for a tombstone, so a late or repeated event
does not bring it back. A case whose item the catalog does not know is
reported (log line, ``unknown_items`` count, level ``unknown_item``), not
guessed; one not yet accepted waits as ``pending``.

Levels counted in `open_cases`: normal, warning, yellow, red, suspended,
pending, unknown_item, invalid (a date outside the calendar's window, or an
evaluation that failed: logged, and the other cases go on).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Annotated, Final, Protocol

from pydantic import BaseModel, ConfigDict, Field

from agent import openstore
from agent.wakeloop import WakeLoop
from casework.clock import CaseClock, Clock
from casework.config import Deployment, UnknownCodeError
from casework.errors import CalendarRangeError
from casework.events import CaseEvent

__all__ = [
    "FLAG_LEVELS",
    "LiveClockSettings",
    "LiveClocks",
    "connect_state",
    "record_events",
]

log = logging.getLogger(__name__)

#: The flags a live clock raises: the case's cards and a special procedure's overrun.
FLAG_LEVELS: Final[tuple[str, ...]] = ("warning", "yellow", "red", "procedure_overrun")
#: Longest single wait: a wall-clock jump (NTP, suspend) is noticed within this many seconds.
MAX_WAIT_SECONDS: Final = 300.0


class LiveClockSettings(BaseModel):
    """How the live clocks work through their queue."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Cases evaluated per write transaction (the core's outbox waits at most that long).
    batch_size: Annotated[int, Field(ge=1)] = 500
    #: How long a closed case's tombstone and flags are kept, in days.
    closed_retention_days: Annotated[float, Field(gt=0)] = 90.0
    #: How often tombstones are pruned, in seconds.
    housekeeping_seconds: Annotated[float, Field(gt=0)] = 3600.0


class Waker(Protocol):
    """What the clocks wake when they queued notices (agent.notify.Notifier)."""

    def wake(self) -> None: ...


def connect_state(path: Path, *, cache_kib: int = 512) -> sqlite3.Connection:
    """A connection of the live clocks' own to the state database: autocommit (the
    callers issue BEGIN IMMEDIATE), WAL, usable from the clock's thread.

    SQLite's page cache is held to `cache_kib` (its default is 2 MiB): with
    100,000 open cases that saves 1.5 MB of resident memory, for about a quarter
    more time per case evaluated (docs/benchmarks.md).
    """
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(f"PRAGMA cache_size=-{int(cache_kib)}")
    return conn


class LiveClocks:
    """Open cases' clocks, evaluated exactly when they change.

    `connect` opens the clocks' own connection to the state database (see
    `connect_state`); `now` is the clock in POSIX seconds; `notices` is woken
    when notices were queued.
    """

    def __init__(
        self,
        deployment: Deployment,
        connect: Callable[[], sqlite3.Connection],
        *,
        settings: LiveClockSettings | None = None,
        clock: Clock | None = None,
        now: Callable[[], float] = time.time,
        notices: Waker | None = None,
    ) -> None:
        self.settings = settings or LiveClockSettings()
        self._deployment = deployment
        self._clock = clock or Clock.for_deployment(deployment)
        self._now = now
        self._notices = notices
        self._conn = connect()
        self._lock = threading.RLock()  # one user of the connection at a time
        self._loop = WakeLoop(
            "esup-liveclocks", self._step, failure="Evaluating the live clocks failed"
        )
        self._next_housekeeping = now()
        #: Case evaluations that failed (each logged; the case is set aside as invalid).
        self.failures = 0
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            openstore.create_tables(self._conn)
            self._conn.execute("COMMIT")
            self._levels: Counter[tuple[str, str]] = Counter(openstore.level_counts(self._conn))
            self._flags: Counter[tuple[str, str]] = Counter(openstore.counts(self._conn, "flags"))
            self._unknown: Counter[str] = Counter(
                {d: n for (d, _), n in openstore.counts(self._conn, "unknown_items").items()}
            )

    # -- the event sink -------------------------------------------------------------------

    def record(self, conn: sqlite3.Connection, events: Sequence[CaseEvent]) -> None:
        """Store a batch's events and mark their cases due, in the caller's transaction.

        Workflow steps are left out: they never move a clock, and they are most
        of a workflow system's events.
        """
        record_events(conn, events)

    def committed(self, events: Sequence[CaseEvent]) -> None:
        """The batch is committed: evaluate its cases now."""
        if any(e.type != "step" for e in events):
            self.wake()

    def set_deployment(self, deployment: Deployment, clock: Clock | None = None) -> None:
        """Clock cases against a new catalog and calendar (agent.catalogcache refreshed
        them): every open case is evaluated again, in batches, by the loop."""
        with self._lock:
            self._deployment = deployment
            self._clock = clock or Clock.for_deployment(deployment)
            self._conn.execute("BEGIN IMMEDIATE")
            openstore.wake_all(self._conn)
            self._conn.execute("COMMIT")
        self.wake()

    # -- evaluation -----------------------------------------------------------------------

    def process_due(self) -> int:
        """Evaluate every case due now, in batches; returns how many were evaluated."""
        total = 0
        while True:
            done = self._process_batch()
            total += done
            if done < self.settings.batch_size:
                break
        now = self._now()
        if now >= self._next_housekeeping:
            self._housekeeping(now)
        return total

    def _process_batch(self) -> int:
        now = self._now()
        at = datetime.fromtimestamp(now, self._clock.tz)
        deltas: Counter[tuple[str, str]] = Counter()
        flags: Counter[tuple[str, str]] = Counter()
        unknown: Counter[str] = Counter()
        notices = 0
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                due = openstore.due_cases(conn, now, self.settings.batch_size)
                for department, case_id, item, old in due:
                    conn.execute("SAVEPOINT one_case")
                    try:
                        new, raised, noticed = self._evaluate(
                            conn, department, case_id, item, old, at, now
                        )
                    except Exception:
                        # One case must not stop the others: set it aside as invalid.
                        log.exception("Evaluating case %s/%s failed.", department, case_id)
                        conn.execute("ROLLBACK TO one_case")
                        openstore.set_case(conn, department, case_id, "invalid", None)
                        new, raised, noticed = "invalid", [], 0
                        self.failures += 1
                    conn.execute("RELEASE one_case")
                    if old:
                        deltas[(department, old)] -= 1
                    if new is not None:
                        deltas[(department, new)] += 1
                        if new == "unknown_item" and old != "unknown_item":
                            unknown[department] += 1
                    for level in raised:
                        flags[(department, level)] += 1
                    notices += noticed
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            # Only what was committed shows in the counters.
            self._levels.update(deltas)
            self._levels = +self._levels  # drops the zeros: a gone series leaves no zero
            self._flags.update(flags)
            self._unknown.update(unknown)
        if notices and self._notices is not None:
            self._notices.wake()
        return len(due)

    def _evaluate(
        self,
        conn: sqlite3.Connection,
        department: str,
        case_id: str,
        item: str,
        old: str,
        at: datetime,
        now: float,
    ) -> tuple[str | None, list[str], int]:
        """Evaluate one case; (its new level or None when closed, flags raised, notices)."""
        if openstore.is_closed(conn, department, case_id):
            # A late or repeated event of a case already closed: nothing to track.
            openstore.close_case(conn, department, case_id, now)
            return None, [], 0
        events = openstore.case_events(conn, department, case_id)
        item = next((e.item for e in events if e.type == "accepted"), item)
        try:
            limits = self._deployment.limits(item)
        except UnknownCodeError:
            openstore.set_case(conn, department, case_id, "unknown_item", None)
            if old == "unknown_item":
                return "unknown_item", [], 0  # reported when first met
            log.warning(
                "Case %s/%s has item %r, which the catalog does not know; its clock is not"
                " kept until the catalog has it.",
                department,
                case_id,
                item,
            )
            openstore.bump(conn, "unknown_items", department)
            return "unknown_item", [], 0
        try:
            state = self._clock.evaluate(events, limits, at)
        except CalendarRangeError as exc:
            log.error("Case %s/%s cannot be clocked: %s", department, case_id, exc)
            openstore.set_case(conn, department, case_id, "invalid", None)
            return "invalid", [], 0
        if state.state == "invalid":
            openstore.set_case(conn, department, case_id, "pending", None)
            return "pending", [], 0
        raised = self._raise(conn, department, case_id, state, now)
        if state.state == "closed":
            closed = state.closed_at
            openstore.close_case(conn, department, case_id, closed.timestamp() if closed else now)
            return None, [r for r, _ in raised], 0
        openstore.set_case(conn, department, case_id, state.level, state.next_change_ts)
        if not raised:
            return state.level, [], 0
        levels = [r for r, _ in raised]
        reached = max(t for _, t in raised)
        body = {
            "format": "esup.notice/1",
            "department": department,
            "case_id": case_id,
            "item": item,
            "level": levels[-1],
            "levels": levels,
            "reached_at": datetime.fromtimestamp(reached, at.tzinfo).isoformat(),
            "raised_at": at.isoformat(),
            "summary": _summary(department, case_id, item, levels[-1], state),
        }
        openstore.add_notice(conn, department, json.dumps(body, ensure_ascii=False), now)
        for level in levels:
            log.warning(
                "Flag %s raised: %s.", level, _summary(department, case_id, item, level, state)
            )
        return state.level, levels, 1

    def _raise(
        self, conn: sqlite3.Connection, department: str, case_id: str, state: CaseClock, now: float
    ) -> list[tuple[str, float]]:
        """Record the case's flags not raised before: [(level, instant reached)]."""
        reached = [(card.level, card.at.timestamp(), "") for card in state.cards]
        for procedure in state.suspensions:
            for level, ts in procedure.flag_ts:
                if level == "yellow":  # its requested days are exceeded
                    reached.append(("procedure_overrun", ts, repr(procedure.started_ts)))
        raised = []
        for level, ts, ref in reached:
            if openstore.add_flag(conn, department, case_id, level, ref, ts, now):
                openstore.bump(conn, "flags", department, level)
                raised.append((level, ts))
        return raised

    def _housekeeping(self, now: float) -> None:
        before = now - self.settings.closed_retention_days * 86400.0
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            pruned = openstore.prune_closed(self._conn, before)
            self._conn.execute("COMMIT")
        if pruned:
            log.info("Forgot %d cases closed more than %s days ago.", pruned, before)
        self._next_housekeeping = now + self.settings.housekeeping_seconds

    # -- when to wake ---------------------------------------------------------------------

    def next_change(self) -> float | None:
        """The earliest instant (POSIX seconds) an open case must be evaluated, if any."""
        with self._lock:
            return openstore.earliest(self._conn)

    def next_wake(self) -> float:
        """The instant the loop must next wake: the earliest level change or the
        housekeeping, whichever comes first."""
        earliest = self.next_change()
        if earliest is None:
            return self._next_housekeeping
        return min(earliest, self._next_housekeeping)

    def wait_seconds(self) -> float:
        """How long the loop waits now, at most `MAX_WAIT_SECONDS`."""
        return min(MAX_WAIT_SECONDS, max(0.0, self.next_wake() - self._now()))

    def wake(self) -> None:
        """Wake the loop early (new events were committed)."""
        self._loop.wake()

    def _step(self) -> float:
        self.process_due()
        return self.wait_seconds()

    def start(self) -> None:
        """Run the loop in a daemon thread."""
        self._loop.start()

    def is_running(self) -> bool:
        """Whether the thread runs (for the agent's /healthz)."""
        return self._loop.is_running()

    def stop(self, timeout: float = 10.0) -> None:
        self._loop.stop(timeout)

    # -- what the metrics read ------------------------------------------------------------

    def open_cases(self) -> dict[tuple[str, str], int]:
        """Open cases by (department, level)."""
        with self._lock:
            return dict(self._levels)

    def flags_raised(self) -> dict[tuple[str, str], int]:
        """Flags raised by (department, level), persistent across restarts."""
        with self._lock:
            return dict(self._flags)

    def unknown_items(self) -> dict[str, int]:
        """Cases met with an item the catalog does not know, by department."""
        with self._lock:
            return dict(self._unknown)


def record_events(conn: sqlite3.Connection, events: Sequence[CaseEvent]) -> None:
    """`LiveClocks.record` without a running clock: store the events and mark their
    cases due, so that the clocks evaluate them when they start (the agent's core
    may run before it has a catalog). The tables must exist (`openstore.create_tables`)."""
    timed = [e for e in events if e.type != "step"]
    if not timed:
        return
    openstore.add_events(
        conn, [(e.department, e.case_id, e.event_id, openstore.encode(e)) for e in timed]
    )
    cases = {(e.department, e.case_id): e.item for e in timed}
    openstore.mark_due(conn, [(d, c, item) for (d, c), item in cases.items()])


def _summary(department: str, case_id: str, item: str, level: str, state: CaseClock) -> str:
    due = state.promised_due
    legal = state.legal_due
    what = {
        "warning": f"{state.warn_days} working day(s) or fewer left",
        "yellow": "past its promised deadline",
        "red": "past its legal deadline",
        "procedure_overrun": "a special procedure exceeded its requested days",
    }.get(level, level)
    dates = f"promised due {due.isoformat() if due else '-'}"
    dates += f", legal due {legal.isoformat() if legal else '-'}"
    return f"case {department}/{case_id} ({item}): {what}; {dates}"
