"""The case clock on worked examples from real Chinese calendars."""

from __future__ import annotations

from datetime import date

import pytest
from casebuilder import TZ, Case, local, package_calendar

from casework.calendar import WorkCalendar, YearRule
from casework.clock import Clock, Limits
from casework.errors import CalendarRangeError

P7L10 = Limits(promised_days=7, legal_days=10, warn_days=2)


def card_times(result: object) -> list[tuple[str, str]]:
    return [(c.level, c.at.strftime("%Y-%m-%d %H:%M")) for c in result.cards]  # type: ignore[attr-defined]


class TestPublishedExample:
    """Accepted 2018-10-15 10:00, promised 7, legal 10: warning 10-22, yellow 10-25, red 10-30."""

    case = Case("2018-10-15 10:00")

    def test_due_dates(self) -> None:
        r = self.case.at("2018-10-16", P7L10)
        assert r.promised_due == date(2018, 10, 24)
        assert r.legal_due == date(2018, 10, 29)
        assert r.promised_deadline == local("2018-10-25")
        assert r.legal_deadline == local("2018-10-30")

    @pytest.mark.parametrize(
        ("when", "level", "remaining"),
        [
            ("2018-10-15 10:00", "normal", 7),
            ("2018-10-21 23:59", "normal", 3),
            ("2018-10-22 00:00", "warning", 2),
            ("2018-10-24 23:59", "warning", 0),
            ("2018-10-25 00:00", "yellow", 0),
            ("2018-10-29 23:59", "yellow", 0),
            ("2018-10-30 00:00", "red", 0),
        ],
    )
    def test_levels(self, when: str, level: str, remaining: int) -> None:
        r = self.case.at(when, P7L10)
        assert (r.state, r.level, r.remaining_days) == ("open", level, remaining)

    def test_cards_and_next_change(self) -> None:
        r = self.case.at("2018-11-01", P7L10)
        assert card_times(r) == [
            ("warning", "2018-10-22 00:00"),
            ("yellow", "2018-10-25 00:00"),
            ("red", "2018-10-30 00:00"),
        ]
        assert r.overdue_days == 6  # days used beyond the limit: 10-25, 26, 29, 30, 31, 11-01
        assert self.case.at("2018-10-19 12:00", P7L10).next_change == local("2018-10-22")
        assert self.case.at("2018-10-22 08:00", P7L10).next_change == local("2018-10-25")
        assert r.next_change is None


def test_acceptance_before_make_up_saturday() -> None:
    # 2008-09-27 and 09-28 (Sat, Sun) were working days before the National Day week.
    r = Case("2008-09-26 16:00").at("2008-09-26 17:00", Limits(3, 5))
    assert r.promised_due == date(2008, 10, 6)  # 09-27, 09-28, then 10-06
    assert r.legal_due == date(2008, 10, 8)


def test_2020_spring_festival_extension() -> None:
    # The 2020 Spring Festival holiday was extended to 2020-02-02 (COVID-19).
    r = Case("2020-01-22 09:00").at("2020-01-22 10:00", Limits(3, 5))
    assert r.promised_due == date(2020, 2, 4)  # 01-23, then 02-03, 02-04
    assert r.legal_due == date(2020, 2, 6)


def test_case_across_national_day_week() -> None:
    # 2019: 09-29 (Sun) worked, 10-01..10-07 off, 10-12 (Sat) worked.
    r = Case("2019-09-27 11:00").at("2019-09-27 12:00", Limits(5, 8))
    assert r.promised_due == date(2019, 10, 10)  # 09-29, 09-30, 10-08, 10-09, 10-10
    assert r.legal_due == date(2019, 10, 14)  # 10-11, 10-12 (Sat), 10-14


def test_suspension_across_a_holiday() -> None:
    case = Case("2019-09-23 09:00").suspend("2019-09-27 15:00", days=5).resume("2019-10-10 09:00")
    r = case.at("2019-10-11 09:00", Limits(10, 20))
    # Counted 09-24..09-27 (4); excluded 09-29, 09-30, 10-08, 10-09, 10-10 (5 = requested);
    # then 10-11, 10-12 (Sat), 10-14, 10-15, 10-16, 10-17.
    assert r.promised_due == date(2019, 10, 17)
    (s,) = r.suspensions
    assert (s.reason, s.days, s.excluded_days, s.is_open) == ("hearing", 5, 5, False)
    assert r.level == "normal"


def test_suspension_excludes_at_most_its_requested_days() -> None:
    short = Case("2024-03-04 09:00").suspend("2024-03-06 10:00", days=2).resume("2024-03-15 10:00")
    r = short.at("2024-03-15 11:00", Limits(10, 20))
    # 03-07 and 03-08 excluded; 03-11..03-15 run against the case again.
    assert r.promised_due == date(2024, 3, 20)
    assert r.suspensions[0].excluded_days == 2
    assert r.suspensions[0].level == "red"  # overran by more than one day


def test_open_special_procedure_has_its_own_levels() -> None:
    case = Case("2024-03-04 09:00").suspend("2024-03-06 10:00", days=3, reason="testing")
    limits = Limits(10, 20)
    assert case.at("2024-03-06 12:00", limits).suspensions[0].level == "normal"
    # Requested days: 03-07, 03-08, 03-11. Warning 2 days before they end: from 03-07.
    assert case.at("2024-03-07 00:00", limits).suspensions[0].level == "warning"
    assert case.at("2024-03-12 00:00", limits).suspensions[0].level == "yellow"
    r = case.at("2024-03-13 00:00", limits)
    assert r.level == "suspended"
    assert r.suspensions[0].level == "red"
    assert [f.at for f in r.suspensions[0].flags] == [
        local("2024-03-07"),
        local("2024-03-12"),
        local("2024-03-13"),
    ]
    # The open procedure stops the clock for 3 days only: 03-05, 03-06, then 03-12 on.
    assert r.promised_due == date(2024, 3, 21)
    assert case.at("2024-03-06 12:00", limits).next_change == local("2024-03-07")


def test_next_change_while_suspended_is_a_card_not_yet_issued() -> None:
    # Promised 0: every card is issued on the first day; a later extension moves the
    # case's thresholds, but while it shows `suspended` that changes nothing.
    case = (
        Case("2004-01-01 00:00")
        .suspend("2004-01-01 00:00", days=1)
        .extend("2004-01-05 23:59", days=2)
    )
    r = case.at("2004-01-06 00:00", Limits(0, 0, warn_days=0))
    assert (r.level, [c.level for c in r.cards]) == ("suspended", ["warning", "yellow", "red"])
    assert r.next_change is None


def test_same_day_suspend_and_resume_excludes_nothing() -> None:
    plain = Case("2018-10-15 10:00").at("2018-10-16", P7L10)
    r = (
        Case("2018-10-15 10:00")
        .suspend("2018-10-17 09:00", days=5)
        .resume("2018-10-17 17:00")
        .at("2018-10-18", P7L10)
    )
    assert (r.promised_due, r.legal_due) == (plain.promised_due, plain.legal_due)


def test_extension_adds_days_and_keeps_earlier_cards() -> None:
    early = Case("2018-10-15 10:00").extend("2018-10-19 10:00", days=5)
    r = early.at("2018-10-29 12:00", P7L10)
    assert r.promised_due == date(2018, 10, 31)  # the 12th counted day
    assert r.legal_due == date(2018, 11, 5)  # the 15th
    assert card_times(r) == [("warning", "2018-10-29 00:00")]

    late = Case("2018-10-15 10:00").extend("2018-10-23 12:00", days=5)
    r = late.at("2018-10-24 12:00", P7L10)
    assert r.level == "normal"  # 5 counted days remain after the extension
    assert card_times(r) == [("warning", "2018-10-22 00:00")]  # reached before; it stays


def test_zero_day_item() -> None:
    immediate = Limits(0, 0, warn_days=0)
    done = Case("2024-03-01 10:00").complete("2024-03-01 15:00").at("2024-03-02", immediate)
    assert (done.state, done.timeliness, done.days_used) == ("closed", "immediate", 0)
    assert done.promised_due == date(2024, 3, 1)
    late = Case("2024-03-01 10:00").complete("2024-03-04 09:00").at("2024-03-05", immediate)
    assert late.timeliness == "late"
    assert [c.level for c in late.cards] == ["warning", "yellow", "red"]
    open_case = Case("2024-03-01 10:00").at("2024-03-01 23:00", immediate)
    assert open_case.level == "warning"  # nothing remains of a 0-day limit
    assert open_case.next_change == local("2024-03-02")


@pytest.mark.parametrize(
    ("closed", "timeliness", "used"),
    [
        ("2018-10-23 16:00", "early", 6),
        ("2018-10-24 23:59", "on_time", 7),
        ("2018-10-25 00:00", "late", 8),
    ],
)
def test_close_categories(closed: str, timeliness: str, used: int) -> None:
    r = Case("2018-10-15 10:00").complete(closed).at("2018-12-01", P7L10)
    assert (r.state, r.outcome, r.timeliness, r.days_used) == (
        "closed",
        "completed",
        timeliness,
        used,
    )
    assert r.closed_at == local(closed)


def test_withdrawn_case_has_no_timeliness_and_cards_stop() -> None:
    r = Case("2018-10-15 10:00").withdraw("2018-10-23 10:00").at("2018-12-01", P7L10)
    assert (r.state, r.outcome, r.timeliness) == ("closed", "withdrawn", None)
    assert card_times(r) == [("warning", "2018-10-22 00:00")]
    assert r.next_change is None


def test_limits_running_into_an_uncovered_year() -> None:
    case = Case("2026-12-21 10:00")
    r = case.at("2026-12-21 11:00", Limits(10, 20))
    assert r.uncovered_years == (2027,)
    # Monday-Friday in 2027: 12-22..12-25, 12-28..12-31 (8), then 2027-01-01 (Fri), 01-04.
    assert r.promised_due == date(2027, 1, 4)

    # Once the State Council's notice is configured, 2027-01-01 is a holiday.
    calendar = WorkCalendar.from_package(
        {2027: YearRule(frozenset({date(2027, 1, 1)}), frozenset(), "notice")}
    )
    r = case.at("2026-12-21 11:00", Limits(10, 20), Clock(calendar))
    assert r.uncovered_years == ()
    assert r.promised_due == date(2027, 1, 5)


def test_covered_case_reports_no_uncovered_year() -> None:
    assert Case("2018-10-15 10:00").at("2018-10-16", P7L10).uncovered_years == ()


def test_accepted_event_overrides_catalog_limits() -> None:
    r = Case("2018-10-15 10:00", promised_days=3, legal_days=5).at("2018-10-16", P7L10)
    assert (r.promised_days, r.legal_days) == (3, 5)
    assert r.promised_due == date(2018, 10, 18)


class TestContradictions:
    def test_resumed_without_suspended(self) -> None:
        r = Case("2018-10-15 10:00").resume("2018-10-16 10:00").at("2018-10-17", P7L10)
        assert [a.problem for a in r.anomalies] == ["resumed without an open suspension"]
        assert r.promised_due == date(2018, 10, 24)

    def test_events_after_completion(self) -> None:
        case = Case("2018-10-15 10:00").complete("2018-10-16 10:00").suspend("2018-10-17 10:00", 3)
        r = case.at("2018-10-20", P7L10)
        assert r.state == "closed"
        assert [a.problem for a in r.anomalies] == ["suspended after the case was completed"]

    def test_steps_before_acceptance_or_after_close(self) -> None:
        case = (
            Case("2018-10-15 10:00")
            ._add("step", "2018-10-15 09:00", step="收件")
            ._add("step", "2018-10-16 10:00", step="审查")
            .complete("2018-10-17 10:00")
            ._add("step", "2018-10-18 10:00", step="归档")
        )
        r = case.at("2018-10-20", P7L10)
        assert (r.state, r.timeliness, r.days_used) == ("closed", "early", 2)
        assert [a.problem for a in r.anomalies] == [
            "step before the case was accepted",
            "step after the case was completed",
        ]

    def test_suspended_twice_and_accepted_twice(self) -> None:
        case = (
            Case("2018-10-15 10:00")
            .suspend("2018-10-16 10:00", 2)
            .suspend("2018-10-17 10:00", 9)
            ._add("accepted", "2018-10-18 10:00")
        )
        r = case.at("2018-10-19", P7L10)
        problems = [a.problem for a in r.anomalies]
        assert problems == [
            "suspended while already suspended",
            "accepted again; the first acceptance counts",
        ]
        assert r.level == "suspended"

    def test_no_acceptance(self) -> None:
        case = Case("2018-10-15 10:00")
        case.events.pop(0)
        case.complete("2018-10-16 10:00")
        r = case.at("2018-10-17", P7L10)
        assert r.state == "invalid"
        assert [a.problem for a in r.anomalies] == ["completed before the case was accepted"]

    def test_nothing_known_yet(self) -> None:
        r = Case("2018-10-15 10:00").at("2018-10-14", P7L10)
        assert r.state == "invalid"
        assert r.accepted_at is None

    def test_one_event_id_two_contents_resolves_the_same_in_any_order(self) -> None:
        case = Case("2018-10-15 10:00").extend("2018-10-16 10:00", 3)
        other = Case("2018-10-15 10:00").extend("2018-10-16 10:00", 9)
        events = [*case.events, other.events[1]]
        clock = Clock(package_calendar())
        a = clock.evaluate(events, P7L10, local("2018-10-20"))
        b = clock.evaluate(events[::-1], P7L10, local("2018-10-20"))
        assert a.promised_due == b.promised_due
        assert [x.event_id for x in a.anomalies] == ["e2"]


def test_legal_below_promised_override_is_reported_and_clamped() -> None:
    r = Case("2018-10-15 10:00", promised_days=7, legal_days=5).at("2018-10-16", P7L10)
    assert r.legal_due == r.promised_due
    assert "legal limit 5 < promised 7" in r.anomalies[0].problem


def test_timezone_other_than_shanghai() -> None:
    # A deployment configured for UTC: days begin at UTC midnight.
    clock = Clock(package_calendar(), "UTC")
    r = clock.evaluate(Case("2018-10-15 10:00").events, P7L10, local("2018-10-22 07:59"))
    # Accepted 2018-10-15 02:00 UTC, so the same working days; 07:59 +08 is 10-21 23:59 UTC.
    assert r.promised_due == date(2018, 10, 24)
    assert r.level == "normal"
    assert r.at.tzinfo is TZ


def test_a_due_date_past_the_calendar_window_is_a_clear_error() -> None:
    case = Case("2099-12-21 10:00")
    with pytest.raises(CalendarRangeError, match=r"zrzy/2018-XK-0001 is outside .* widen window"):
        case.at("2099-12-22", Limits(10, 20))
    clock = Clock(package_calendar())
    sweep = clock.evaluate_many([(case.events, Limits(10, 20))], local("2099-12-22"))
    with pytest.raises(CalendarRangeError, match="outside"):
        list(sweep)
