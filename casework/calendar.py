"""The Chinese working-day calendar.

A working day is Monday to Friday, minus public holidays, plus make-up working
days (调休, often a Saturday). Holidays and make-up days come from the
`chinese-calendar` package for the years it knows (2004-2026 in release 1.11)
and from the deployment's configuration, which may add a year (when the State
Council publishes its notice) or override single dates. A year neither source
covers counts as plain Monday-Friday; `uncovered_years` says so, so that the
callers can log it, expose it as a metric and alert on it.

Arithmetic never walks day by day. At construction the calendar precomputes,
for every day of its window (default 2000-2099), the number of working days up
to and including that day, and the ordinal of every working day. "The N-th
working day after A" and "working days between A and B" are then one or two
array look-ups.

Dates are `datetime.date`; the `*_ordinal` methods take and return proleptic
Gregorian ordinals (`date.toordinal()`) for the clock's hot path.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

from casework.errors import CalendarRangeError

if TYPE_CHECKING:
    from casework.config import CalendarConfig

DEFAULT_FIRST_YEAR = 2000
DEFAULT_LAST_YEAR = 2099


@dataclass(frozen=True, slots=True)
class YearRule:
    """One year's holidays and make-up working days, as a State Council notice gives them."""

    holidays: frozenset[date]
    workdays: frozenset[date]
    source: str = ""


def package_years() -> dict[int, YearRule]:
    """The years the `chinese-calendar` package knows, with their holidays and make-up days."""
    from chinese_calendar import constants  # imported here: only building a calendar needs it

    holidays: dict[int, set[date]] = {}
    workdays: dict[int, set[date]] = {}
    for day in constants.holidays:
        holidays.setdefault(day.year, set()).add(day)
    for day in constants.workdays:
        workdays.setdefault(day.year, set()).add(day)
    years = range(min(holidays), max(holidays) + 1)
    return {
        y: YearRule(
            frozenset(holidays.get(y, ())),
            frozenset(workdays.get(y, ())),
            "chinese-calendar package",
        )
        for y in years
    }


class WorkCalendar:
    """Working days over a window of years, with O(1) working-day arithmetic.

    `years` maps each covered year to its rule; `holidays` and `workdays` are
    single-date overrides applied last (a date in both is an error the
    configuration loader already rejects; here the later list, workdays, wins).
    """

    def __init__(
        self,
        years: Mapping[int, YearRule],
        *,
        holidays: Iterable[date] = (),
        workdays: Iterable[date] = (),
        first_year: int = DEFAULT_FIRST_YEAR,
        last_year: int = DEFAULT_LAST_YEAR,
    ) -> None:
        if last_year < first_year:
            raise ValueError(f"last_year {last_year} is before first_year {first_year}.")
        self.first_day = date(first_year, 1, 1)
        self.last_day = date(last_year, 12, 31)
        self.covered_years: frozenset[int] = frozenset(
            y for y in years if first_year <= y <= last_year
        )
        off: set[date] = set()
        on: set[date] = set()
        for rule in years.values():
            off |= rule.holidays
            on |= rule.workdays
        off |= set(holidays)
        on -= set(holidays)
        on |= set(workdays)
        off -= set(workdays)

        base = self.first_day.toordinal()
        last = self.last_day.toordinal()
        #: Ordinal of the window's first day; index i of the arrays is ordinal base + i.
        self.base = base
        #: cum[i]: working days in [base, base + i].
        self.cum = array("l", bytes(8 * (last - base + 1)))
        #: workday_ordinals[j]: ordinal of the (j + 1)-th working day of the window.
        self.workday_ordinals = array("l")
        #: gaps[i]: days of uncovered years in [base, base + i - 1]; gaps[0] = 0.
        self.gaps = array("l", bytes(8 * (last - base + 2)))
        count = 0
        gaps = 0
        covered = self.covered_years
        for i in range(last - base + 1):
            day = date.fromordinal(base + i)
            working = day in on or (day.weekday() < 5 and day not in off)
            if working:
                count += 1
                self.workday_ordinals.append(base + i)
            self.cum[i] = count
            if day.year not in covered:
                gaps += 1
            self.gaps[i + 1] = gaps

    @classmethod
    def from_package(
        cls,
        extra_years: Mapping[int, YearRule] | None = None,
        *,
        holidays: Iterable[date] = (),
        workdays: Iterable[date] = (),
        first_year: int = DEFAULT_FIRST_YEAR,
        last_year: int = DEFAULT_LAST_YEAR,
    ) -> WorkCalendar:
        """The package's years, replaced or extended year by year by `extra_years`."""
        years = package_years()
        years.update(extra_years or {})
        return cls(
            years,
            holidays=holidays,
            workdays=workdays,
            first_year=first_year,
            last_year=last_year,
        )

    @classmethod
    def from_config(cls, config: CalendarConfig) -> WorkCalendar:
        """The package's years overridden and extended by a deployment's `calendar.yaml`."""
        extra = {
            year: YearRule(frozenset(rule.holidays), frozenset(rule.workdays), rule.source)
            for year, rule in config.years.items()
        }
        return cls.from_package(
            extra,
            holidays=config.holidays,
            workdays=config.workdays,
            first_year=config.window.first_year,
            last_year=config.window.last_year,
        )

    # -- coverage ---------------------------------------------------------------------------

    @property
    def last_covered_year(self) -> int | None:
        """The last year whose holidays are known; later years count as Monday-Friday."""
        return max(self.covered_years) if self.covered_years else None

    def covers(self, year: int) -> bool:
        """Whether the holidays of `year` are known (from the package or the configuration)."""
        return year in self.covered_years

    def uncovered_years(self, start: date, end: date) -> tuple[int, ...]:
        """Years between `start` and `end` (inclusive) that count as plain Monday-Friday."""
        if end < start:
            start, end = end, start
        return self.uncovered_years_ordinal(start.toordinal(), end.toordinal())

    def uncovered_years_ordinal(self, start: int, end: int) -> tuple[int, ...]:
        """`uncovered_years` on ordinals; O(1) when the whole span is covered."""
        i = self._index(start)
        j = self._index(end)
        if self.gaps[j + 1] == self.gaps[i]:
            return ()
        first = date.fromordinal(start).year
        last = date.fromordinal(end).year
        return tuple(y for y in range(first, last + 1) if y not in self.covered_years)

    # -- arithmetic on dates ----------------------------------------------------------------

    def is_working_day(self, day: date) -> bool:
        """Whether `day` is a working day."""
        i = self._index(day.toordinal())
        return self.cum[i] != (self.cum[i - 1] if i > 0 else 0)

    def add_working_days(self, start: date, n: int) -> date:
        """The `n`-th working day after `start` (`start` itself never counts); `start` for n = 0."""
        return date.fromordinal(self.add_working_days_ordinal(start.toordinal(), n))

    def working_days_between(self, start: date, end: date) -> int:
        """Working days d with start < d <= end; negative when `end` is before `start`."""
        return self.count_ordinal(end.toordinal()) - self.count_ordinal(start.toordinal())

    def next_working_day(self, day: date) -> date:
        """The first working day strictly after `day`."""
        return self.add_working_days(day, 1)

    # -- arithmetic on ordinals (the clock's hot path) --------------------------------------

    def count_ordinal(self, ordinal: int) -> int:
        """Working days from the window's start up to and including `ordinal`."""
        return self.cum[self._index(ordinal)]

    def nth_working_ordinal(self, index: int) -> int:
        """Ordinal of the working day with 0-based window index `index`.

        `workday_ordinals[count_ordinal(a) + n - 1]` is the n-th working day after a.
        """
        if index < 0 or index >= len(self.workday_ordinals):
            raise CalendarRangeError(f"working day #{index + 1}", self.first_day, self.last_day)
        return self.workday_ordinals[index]

    def add_working_days_ordinal(self, start: int, n: int) -> int:
        """`add_working_days` on ordinals."""
        if n <= 0:
            if n < 0:
                raise ValueError(f"n must be >= 0, got {n}.")
            self._index(start)
            return start
        return self.nth_working_ordinal(self.count_ordinal(start) + n - 1)

    def _index(self, ordinal: int) -> int:
        i = ordinal - self.base
        if i < 0 or i >= len(self.cum):
            raise CalendarRangeError(date.fromordinal(ordinal), self.first_day, self.last_day)
        return i
