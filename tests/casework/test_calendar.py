"""The working-day calendar: real years, configuration overrides, O(1) arithmetic."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from casebuilder import package_calendar
from hypothesis import given
from hypothesis import strategies as st

from casework.calendar import WorkCalendar, YearRule
from casework.errors import CalendarRangeError

CAL = package_calendar()


@pytest.mark.parametrize(
    ("day", "working"),
    [
        (date(2008, 9, 27), True),  # Saturday worked before National Day 2008
        (date(2008, 10, 1), False),
        (date(2020, 1, 19), True),  # Sunday worked before Spring Festival 2020
        (date(2020, 1, 31), False),  # Spring Festival 2020, extended
        (date(2020, 2, 3), True),
        (date(2019, 10, 12), True),  # Saturday worked after National Day 2019
        (date(2024, 3, 9), False),  # an ordinary Saturday
        (date(2026, 10, 1), False),
    ],
)
def test_real_days(day: date, working: bool) -> None:
    assert CAL.is_working_day(day) is working


def test_package_years_are_covered_and_the_next_is_reported() -> None:
    assert CAL.covers(2004)
    assert CAL.covers(2026)
    assert not CAL.covers(2027)
    assert CAL.last_covered_year == 2026
    assert CAL.uncovered_years(date(2026, 12, 1), date(2028, 1, 10)) == (2027, 2028)
    assert CAL.uncovered_years(date(2018, 1, 1), date(2018, 12, 31)) == ()


def test_uncovered_year_counts_as_monday_to_friday() -> None:
    # 2027-01-01 is a Friday; nobody has told esup it is a holiday yet.
    assert CAL.is_working_day(date(2027, 1, 1))
    assert not CAL.is_working_day(date(2027, 1, 2))


def test_configured_year_replaces_the_package_and_extends_it() -> None:
    cal = WorkCalendar.from_package(
        {
            2027: YearRule(frozenset({date(2027, 1, 1)}), frozenset({date(2027, 2, 6)}), "notice"),
            2019: YearRule(frozenset(), frozenset(), "a year with no holidays at all"),
        }
    )
    assert cal.covers(2027)
    assert cal.last_covered_year == 2027
    assert not cal.is_working_day(date(2027, 1, 1))
    assert cal.is_working_day(date(2027, 2, 6))  # a make-up Saturday
    assert cal.is_working_day(date(2019, 10, 1))  # the package's holiday is gone
    assert not cal.is_working_day(date(2019, 10, 12))  # and so is its make-up Saturday


def test_single_date_overrides() -> None:
    cal = WorkCalendar.from_package(holidays=[date(2024, 3, 8)], workdays=[date(2024, 3, 9)])
    assert not cal.is_working_day(date(2024, 3, 8))
    assert cal.is_working_day(date(2024, 3, 9))


def test_arithmetic() -> None:
    assert CAL.add_working_days(date(2018, 10, 15), 0) == date(2018, 10, 15)
    assert CAL.add_working_days(date(2018, 10, 15), 7) == date(2018, 10, 24)
    assert CAL.add_working_days(date(2018, 10, 13), 1) == date(2018, 10, 15)  # from a Saturday
    assert CAL.working_days_between(date(2018, 10, 15), date(2018, 10, 24)) == 7
    assert CAL.working_days_between(date(2018, 10, 24), date(2018, 10, 15)) == -7
    assert CAL.next_working_day(date(2020, 1, 23)) == date(2020, 2, 3)
    with pytest.raises(ValueError, match="n must be >= 0"):
        CAL.add_working_days(date(2018, 10, 15), -1)


def test_window_edges_raise_a_clear_error() -> None:
    with pytest.raises(CalendarRangeError, match=r"1999-12-31 is outside .* widen window"):
        CAL.is_working_day(date(1999, 12, 31))
    with pytest.raises(CalendarRangeError, match="outside"):
        CAL.add_working_days(date(2099, 12, 28), 30)
    small = WorkCalendar({}, first_year=2024, last_year=2024)
    assert small.add_working_days(date(2024, 12, 30), 1) == date(2024, 12, 31)
    assert small.last_covered_year is None


def naive_add(cal: WorkCalendar, start: date, n: int) -> date:
    day = start
    while n > 0:
        day += timedelta(days=1)
        if cal.is_working_day(day):
            n -= 1
    return day


def naive_is_working(day: date, holidays: set[date], workdays: set[date]) -> bool:
    return day in workdays or (day.weekday() < 5 and day not in holidays)


@given(st.dates(min_value=date(2000, 1, 1), max_value=date(2098, 1, 1)), st.integers(0, 120))
def test_add_working_days_equals_walking_day_by_day(start: date, n: int) -> None:
    assert CAL.add_working_days(start, n) == naive_add(CAL, start, n)
    assert CAL.working_days_between(start, CAL.add_working_days(start, n)) == n


def test_every_day_agrees_with_the_package() -> None:
    import chinese_calendar

    day = date(2004, 1, 1)
    while day <= date(2026, 12, 31):
        assert CAL.is_working_day(day) == chinese_calendar.is_workday(day), day
        day += timedelta(days=1)
