"""How a case stands at an instant: its limits, levels, cards and special procedures.

`CaseClock` is what `casework.clock.Clock.evaluate` returns; the rules behind
every field are in casework/clock.py and docs/design.md, "The case clock".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from typing import Final, NamedTuple

from casework.calendar import WorkCalendar
from casework.localtime import LocalTime

#: Levels of an open case, lowest first (`suspended` stands apart).
LEVELS: Final[tuple[str, ...]] = ("normal", "warning", "yellow", "red")
CARD_LEVELS: Final[tuple[str, ...]] = ("warning", "yellow", "red")
#: How a completed case closed.
TIMELINESS: Final[tuple[str, ...]] = ("immediate", "early", "on_time", "late")
#: An instant that never comes: no close yet, no resume yet, no next change.
NEVER: Final[float] = float("inf")


@dataclass(frozen=True, slots=True)
class Limits:
    """An item's time limits in working days, as the clock uses them."""

    promised_days: int
    legal_days: int
    warn_days: int = 2


@dataclass(frozen=True, slots=True)
class Card:
    """A level reached at an instant: a case card, or a special procedure's flag."""

    level: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Anomaly:
    """An event the clock could not use as it stands, and why."""

    event_id: str
    problem: str


class Suspension(NamedTuple):
    """A special procedure (特别程序): the clock stops for at most `days` working days.

    `excluded_days` is how many working days it took off the case's clock as of
    the evaluation instant; `level` its own level then (for a finished one, the
    highest it reached); `flags` when it reached warning, yellow and red.
    Instants are kept as timestamps and become datetimes on access.
    """

    reason: str
    days: int
    started_ts: float
    resumed_ts: float | None
    excluded_days: int
    level: str
    flag_ts: tuple[tuple[str, float], ...]
    tz: tzinfo

    @property
    def is_open(self) -> bool:
        return self.resumed_ts is None

    @property
    def started_at(self) -> datetime:
        return datetime.fromtimestamp(self.started_ts, self.tz)

    @property
    def resumed_at(self) -> datetime | None:
        """When the procedure ended: its `resumed` event, or the case's close."""
        return None if self.resumed_ts is None else datetime.fromtimestamp(self.resumed_ts, self.tz)

    @property
    def flags(self) -> tuple[Card, ...]:
        return tuple(Card(level, datetime.fromtimestamp(t, self.tz)) for level, t in self.flag_ts)


class CaseClock:
    """The clock of one case at one instant (`Clock.evaluate`'s result).

    Fields holding instants and dates are computed on access from the stored
    timestamps and ordinals. `state` is ``open``, ``closed`` or ``invalid``
    (no acceptance known at the instant: every other field is then empty).
    """

    # Class-level defaults: `evaluate` sets only what a case has, which keeps it cheap.
    state: str = "invalid"
    level: str = ""
    promised_days: int = 0
    legal_days: int = 0
    extended_days: int = 0
    warn_days: int = 0
    remaining_days: int = 0
    overdue_days: int = 0
    days_used: int | None = None
    outcome: str | None = None
    timeliness: str | None = None
    uncovered_years: tuple[int, ...] = ()
    anomalies: tuple[Anomaly, ...] = ()
    _accepted: float = NEVER
    _closed: float = NEVER
    _promised_due: int = 0
    _legal_due: int = 0
    _next: float = NEVER
    _cards: tuple[tuple[str, float], ...] = ()
    _extensions: tuple[tuple[float, int], ...] = ()
    _ranges: tuple[tuple[int, int, int], ...] = ()

    #: Builds `suspensions` on first access (most callers never read them).
    _procedures: Callable[[], tuple[Suspension, ...]] | None = None
    _suspensions: tuple[Suspension, ...] | None = None

    #: Set by the clock on every result: the zone for conversions, and the instant.
    _zone: LocalTime
    at: datetime

    @property
    def suspensions(self) -> tuple[Suspension, ...]:
        """The special procedures known at `at`, in order, each with its own level."""
        if self._suspensions is None:
            self._suspensions = self._procedures() if self._procedures is not None else ()
        return self._suspensions

    @property
    def accepted_at(self) -> datetime | None:
        return None if self._accepted == NEVER else self._zone.instant(self._accepted)

    @property
    def closed_at(self) -> datetime | None:
        return None if self._closed == NEVER else self._zone.instant(self._closed)

    @property
    def promised_due(self) -> date | None:
        """Local date the promised limit runs out (the case is on time if closed that day)."""
        return date.fromordinal(self._promised_due) if self._promised_due else None

    @property
    def legal_due(self) -> date | None:
        return date.fromordinal(self._legal_due) if self._legal_due else None

    @property
    def promised_deadline(self) -> datetime | None:
        """End of the promised due date: the instant the case turns yellow."""
        if not self._promised_due:
            return None
        return self._zone.instant(self._zone.midnight(self._promised_due + 1))

    @property
    def legal_deadline(self) -> datetime | None:
        """End of the legal due date: the instant the case turns red."""
        if not self._legal_due:
            return None
        return self._zone.instant(self._zone.midnight(self._legal_due + 1))

    @property
    def cards(self) -> tuple[Card, ...]:
        """Cards issued by the evaluation instant, in the order they were reached."""
        return tuple(Card(level, self._zone.instant(ts)) for level, ts in self._cards)

    @property
    def extensions(self) -> tuple[tuple[datetime, int], ...]:
        """(instant, working days added) of every extension known at `at`."""
        return tuple((self._zone.instant(ts), days) for ts, days in self._extensions)

    def excluded_dates(self, calendar: WorkCalendar) -> dict[date, int]:
        """The working days special procedures took off the clock -> index in `suspensions`.

        For an open procedure these include the future days its requested days
        will take, as the due dates assume.
        """
        return {
            date.fromordinal(calendar.workday_ordinals[i]): s
            for lo, hi, s in self._ranges
            for i in range(lo, hi)
        }

    @property
    def card(self) -> str | None:
        """The highest card issued, if any."""
        return self._cards[-1][0] if self._cards else None

    @property
    def next_change(self) -> datetime | None:
        """The next instant after `at` at which the level or a card changes, if one is due."""
        return None if self._next == NEVER else self._zone.instant(self._next)

    @property
    def next_change_ts(self) -> float | None:
        """`next_change` as a POSIX timestamp, for schedulers."""
        return None if self._next == NEVER else self._next

    @property
    def card_times(self) -> tuple[tuple[str, float], ...]:
        """`cards` as (level, POSIX timestamp), for schedulers."""
        return self._cards

    @property
    def dates_key(self) -> tuple[float, float, int, int]:
        """Acceptance and closing (POSIX timestamps, infinite when none) and the promised
        and legal due dates (ordinals, 0 when none): compared cheaply, for schedulers."""
        return (self._accepted, self._closed, self._promised_due, self._legal_due)
