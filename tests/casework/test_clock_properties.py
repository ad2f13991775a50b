"""Properties of the case clock that must hold for every case (Hypothesis)."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

from casebuilder import TZ, package_calendar
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from casework.clock import CaseClock, Clock, Limits
from casework.events import CaseEvent

CAL = package_calendar()
CLOCK = Clock(CAL)
RANK = {"normal": 0, "warning": 1, "yellow": 2, "red": 3}


def event(n: int, kind: str, at: datetime, **fields: object) -> CaseEvent:
    return CaseEvent(
        event_id=f"e{n}",
        case_id="c",
        department="d",
        item="i",
        type=kind,  # type: ignore[arg-type]
        at=at,
        **fields,  # type: ignore[arg-type]
    )


accept_instants = st.datetimes(min_value=datetime(2004, 1, 1), max_value=datetime(2027, 6, 30)).map(
    lambda d: d.replace(tzinfo=TZ)
)
limits_st = st.tuples(st.integers(0, 30), st.integers(0, 30), st.integers(0, 5)).map(
    lambda t: Limits(t[0], t[0] + t[1], t[2])
)


@st.composite
def cases(draw: st.DrawFn, *, suspensions: bool = True, extensions: bool = True) -> list[CaseEvent]:
    """A plausible case: acceptance, then suspensions, extensions and maybe a close."""
    t = draw(accept_instants)
    events = [event(1, "accepted", t)]
    steps = draw(st.integers(0, 6))
    open_susp = False
    for _ in range(steps):
        t += timedelta(minutes=draw(st.integers(0, 60 * 24 * 12)))
        kinds = ["step"]
        if suspensions:
            kinds.append("resumed" if open_susp else "suspended")
        if extensions:
            kinds.append("extended")
        kind = draw(st.sampled_from(kinds))
        n = len(events) + 1
        if kind == "suspended":
            reason = draw(st.sampled_from(["hearing", "testing", "expert_review"]))
            events.append(event(n, kind, t, days=draw(st.integers(1, 15)), reason=reason))
            open_susp = True
        elif kind == "resumed":
            events.append(event(n, kind, t))
            open_susp = False
        elif kind == "extended":
            events.append(event(n, kind, t, days=draw(st.integers(1, 10))))
        else:
            events.append(event(n, kind, t, step="审查"))
    if draw(st.booleans()):
        t += timedelta(minutes=draw(st.integers(0, 60 * 24 * 40)))
        events.append(event(len(events) + 1, draw(st.sampled_from(["completed", "withdrawn"])), t))
    return events


def later(events: list[CaseEvent], minutes: int) -> datetime:
    return max(e.at for e in events) + timedelta(minutes=minutes)


def snapshot(r: CaseClock) -> tuple[object, ...]:
    return (
        r.state,
        r.level,
        r.promised_due,
        r.legal_due,
        r.remaining_days,
        r.overdue_days,
        r.cards,
        r.timeliness,
        r.days_used,
        r.suspensions,
        r.next_change,
        r.uncovered_years,
        sorted((a.event_id, a.problem) for a in r.anomalies),
    )


@given(accept_instants, limits_st)
def test_without_suspensions_due_date_is_a_plain_working_day_offset(
    accepted: datetime, limits: Limits
) -> None:
    r = CLOCK.evaluate([event(1, "accepted", accepted)], limits, accepted)
    a = accepted.date()
    assert r.promised_due == CAL.add_working_days(a, limits.promised_days)
    assert r.legal_due == CAL.add_working_days(a, limits.legal_days)


@given(cases(suspensions=False), limits_st, st.integers(0, 60 * 24 * 60))
def test_a_suspension_never_makes_a_due_date_earlier(
    events: list[CaseEvent], limits: Limits, gap: int
) -> None:
    at = later(events, 60 * 24 * 90)
    before = CLOCK.evaluate(events, limits, at)
    start = events[0].at + timedelta(minutes=gap)
    suspended = [
        *events,
        event(90, "suspended", start, days=5, reason="hearing"),
        event(91, "resumed", start + timedelta(days=3)),
    ]
    after = CLOCK.evaluate(suspended, limits, at)
    assert after.promised_due is not None
    assert before.promised_due is not None
    assert after.promised_due >= before.promised_due
    assert after.legal_due >= before.legal_due  # type: ignore[operator]


@given(cases(suspensions=False), limits_st, st.data())
def test_a_suspension_wholly_inside_non_working_days_changes_nothing(
    events: list[CaseEvent], limits: Limits, data: st.DataObject
) -> None:
    # Suspend in the evening before a weekend or holiday, resume before it ends.
    first = events[0].at.date() + timedelta(days=data.draw(st.integers(1, 40)))
    while (CAL.next_working_day(first) - first).days < 2:
        first += timedelta(days=1)
    rest = (CAL.next_working_day(first) - first).days - 1
    resume_day = first + timedelta(days=data.draw(st.integers(1, rest)))
    start = datetime.combine(first, datetime.min.time(), TZ) + timedelta(hours=20)
    resume = datetime.combine(resume_day, datetime.min.time(), TZ) + timedelta(hours=9)
    at = max(later(events, 60 * 24 * 30), resume + timedelta(days=1))
    closes = [e.at for e in events if e.type in ("completed", "withdrawn")]
    assume(all(c > resume for c in closes))
    base = CLOCK.evaluate(events, limits, at)
    r = CLOCK.evaluate(
        [
            *events,
            event(90, "suspended", start, days=3, reason="testing"),
            event(91, "resumed", resume),
        ],
        limits,
        at,
    )
    assert (r.promised_due, r.legal_due, r.cards, r.timeliness, r.remaining_days) == (
        base.promised_due,
        base.legal_due,
        base.cards,
        base.timeliness,
        base.remaining_days,
    )


@given(cases(), limits_st, st.randoms(use_true_random=False), st.integers(0, 60 * 24 * 60))
def test_permuting_or_duplicating_events_changes_nothing(
    events: list[CaseEvent], limits: Limits, rnd: random.Random, minutes: int
) -> None:
    at = events[0].at + timedelta(minutes=minutes)
    shuffled = events + rnd.sample(events, k=rnd.randint(0, len(events)))
    rnd.shuffle(shuffled)
    assert snapshot(CLOCK.evaluate(shuffled, limits, at)) == snapshot(
        CLOCK.evaluate(events, limits, at)
    )


@given(cases(), limits_st, st.lists(st.integers(0, 60 * 24 * 200), min_size=2, max_size=6))
def test_cards_only_ever_go_up(events: list[CaseEvent], limits: Limits, offsets: list[int]) -> None:
    previous: tuple[object, ...] = ()
    for minutes in sorted(offsets):
        r = CLOCK.evaluate(events, limits, events[0].at + timedelta(minutes=minutes))
        assert r.cards[: len(previous)] == previous
        assert [c.level for c in r.cards] == ["warning", "yellow", "red"][: len(r.cards)]
        previous = r.cards


@given(cases(), limits_st, st.lists(st.integers(0, 60 * 24 * 200), min_size=2, max_size=6))
def test_levels_never_go_down_as_time_passes(
    events: list[CaseEvent], limits: Limits, offsets: list[int]
) -> None:
    levels = [
        CLOCK.evaluate(events, limits, later(events, minutes)).level for minutes in sorted(offsets)
    ]
    if levels[0] in RANK:
        assert [RANK[x] for x in levels] == sorted(RANK[x] for x in levels)
    else:  # suspended, completed, withdrawn: nothing changes until the next event
        assert len(set(levels)) == 1


@given(cases(), limits_st)
def test_promised_due_never_after_legal_due(events: list[CaseEvent], limits: Limits) -> None:
    r = CLOCK.evaluate(events, limits, later(events, 0))
    assert r.promised_due is not None
    assert r.legal_due is not None
    assert r.promised_due <= r.legal_due


@settings(max_examples=50)
@given(cases(), limits_st)
def test_next_change_is_when_something_changes(events: list[CaseEvent], limits: Limits) -> None:
    at = later(events, 1)
    r = CLOCK.evaluate(events, limits, at)
    if r.next_change is None:
        return
    just_before = CLOCK.evaluate(events, limits, r.next_change - timedelta(microseconds=1))
    at_change = CLOCK.evaluate(events, limits, r.next_change)
    assert (*snapshot(just_before)[:2], just_before.cards) == (*snapshot(r)[:2], r.cards)
    changed = (
        at_change.level != r.level
        or at_change.cards != r.cards
        or [s.level for s in at_change.suspensions] != [s.level for s in r.suspensions]
    )
    assert changed


def test_duplicate_with_different_offset_is_the_same_instant() -> None:
    a = event(1, "accepted", datetime(2018, 10, 15, 10, 0, tzinfo=TZ))
    same = replace(a, at=a.at.astimezone(UTC))  # the same instant, written in UTC
    r = CLOCK.evaluate([a, same], Limits(7, 10), datetime(2018, 10, 16, tzinfo=TZ))
    assert r.anomalies == ()
    assert r.promised_due == date(2018, 10, 24)
