"""The workflow simulator: one reference year of case events, seeded and reproducible.

    simulate(deployment, seed=1, shape=REFERENCE_SHAPE) -> Simulation

Generates what the workflow systems of a city's supervised departments would
report in one year (2025 by default, fully inside the calendar data):
acceptances on working days in office hours (Asia/Shanghai local time, or the
deployment's zone), busier and quieter days, departments and items in uneven
proportions; workflow steps, special procedures with their reasons and
requested days, extensions; completions spread around the promised limit
(most early, some on the due day, some late), some withdrawn. Every date is
worked out with `casework.calendar.WorkCalendar` and every due date with
`casework.clock.Clock`.

The year's shape is exact, counted by esup's own definitions (docs/design.md,
"Figures") over the period [Jan 1, Jan 1 of the next year): `shape.received`
valid cases accepted in the year, `shape.carried_over` accepted in the last
quarter of the year before and still open at its start, and `shape.completed`
of those closed (completed or withdrawn) within the year. The others stay
open past the year's end: most close in the next year, before `HORIZON`, a
few never. `REFERENCE_SHAPE` is the reference city's year (22,746 / 6,630 /
28,260: a completion rate of 96.2%); `YearShape.scaled(x)` a smaller one of
the same shape.

The faults (malformed lines, contradictory records) are added by
`esup.simfaults`, the files laid out and written by `esup.dropfolders`, and the
expected figures counted by `esup.simfigures`. The same deployment, seed and
shape give the same events, byte for byte: one `random.Random(seed)` drives
everything, and nothing iterates over a set or depends on the wall clock.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Final

from casework.calendar import WorkCalendar
from casework.clock import Clock
from casework.config import SHARED_KINDS, Deployment, Item
from casework.events import CaseEvent, EventType
from esup.yearshape import HORIZON, REFERENCE_SHAPE, REFERENCE_YEAR, SimulationError, YearShape

__all__ = [
    "HORIZON",
    "REFERENCE_SHAPE",
    "REFERENCE_YEAR",
    "CasePlan",
    "SimulationError",
    "YearShape",
    "item_codes",
    "plan_cases",
]

# -- rhythms -------------------------------------------------------------------------------

#: Relative load by weekday (Monday first; a make-up Saturday or Sunday is quiet).
WEEKDAY_LOAD: Final = (1.25, 1.1, 1.0, 0.95, 0.8, 0.7, 0.7)
#: Relative load by month: busy before the Spring Festival and at the year's end.
MONTH_LOAD: Final = (1.1, 0.85, 1.1, 1.0, 1.0, 1.05, 0.95, 0.85, 1.0, 0.95, 1.05, 1.15)
#: The first working day after three or more days off gets the backlog.
AFTER_BREAK_LOAD: Final = 1.35

#: Special procedures: reason -> (weight, fewest and most working days requested).
PROCEDURES: Final[dict[str, tuple[float, int, int]]] = {
    "supplement": (30, 5, 10),
    "expert_review": (18, 5, 20),
    "inspection": (15, 3, 10),
    "testing": (10, 5, 15),
    "hearing": (6, 10, 20),
    "appraisal": (6, 10, 30),
    "quarantine": (3, 5, 10),
    "tender": (3, 15, 30),
    "auction": (2, 15, 30),
    "other": (7, 5, 10),
}
#: Workflow steps by item kind, in the order a case passes them.
STEPS: Final[dict[str, tuple[str, ...]]] = {
    "approval": ("初审", "复审", "审批决定", "制证送达"),
    "petition": ("派单", "承办", "回访"),
    "instruction": ("交办", "办理", "反馈"),
}
HANDLERS: Final = (
    "王芳", "李伟", "张敏", "刘洋", "陈静", "杨帆", "赵磊", "黄丽",
    "周强", "吴娜", "徐斌", "孙倩", "马骏", "朱琳", "胡军", "郭婷",
)  # fmt: skip

P_PROCEDURE: Final = 0.07  # of cases with a limit of 5 days or more
P_EXTENSION: Final = 0.03  # of cases with a limit of 7 days or more
P_WITHDRAWN: Final = 0.025
P_NEVER_CLOSED: Final = 0.04  # of the cases open at the year's end
TIMELINESS_MIX: Final = (("early", 0.80), ("on_time", 0.13), ("late", 0.07))


@dataclass(slots=True)
class CasePlan:
    """One case being planned: its department, item and events (instants local, aware)."""

    department: str
    item: str
    kind: str
    accepted: datetime
    promised_days: int
    case_id: str = ""
    #: (instant, type, fields) of every event after the acceptance, in time order.
    later: list[tuple[datetime, EventType, dict[str, object]]] = field(default_factory=list)

    @property
    def close(self) -> tuple[datetime, EventType, dict[str, object]] | None:
        if self.later and self.later[-1][1] in ("completed", "withdrawn"):
            return self.later[-1]
        return None

    def events(self) -> list[CaseEvent]:
        """The case's events in time order, event ids numbered in that order."""
        out = [self._event(1, self.accepted, "accepted", {})]
        out += [self._event(n, at, kind, f) for n, (at, kind, f) in enumerate(self.later, 2)]
        return out

    def _event(self, n: int, at: datetime, kind: EventType, fields: dict[str, object]) -> CaseEvent:
        return CaseEvent(
            event_id=f"{self.case_id}-{n:02d}",
            case_id=self.case_id,
            department=self.department,
            item=self.item,
            type=kind,
            at=at,
            **fields,  # type: ignore[arg-type]
        )


class _Days:
    """Working days as ordinals, and office-hour instants on them."""

    def __init__(self, calendar: WorkCalendar, tz: tzinfo, rng: random.Random) -> None:
        self.cal = calendar
        self.tz = tz
        self.rng = rng

    def between(self, first: date, end: date) -> list[int]:
        """Working-day ordinals in [first, end)."""
        wd = self.cal.workday_ordinals
        lo = self.cal.count_ordinal(first.toordinal() - 1)
        hi = self.cal.count_ordinal(end.toordinal() - 1)
        return list(wd[lo:hi])

    def add(self, ordinal: int, n: int) -> int:
        """The n-th working day after `ordinal` (n >= 1), or `ordinal` itself for n <= 0."""
        return self.cal.add_working_days_ordinal(ordinal, n) if n > 0 else ordinal

    def count(self, start: int, end: int) -> int:
        """Working days d with start < d <= end."""
        return self.cal.count_ordinal(end) - self.cal.count_ordinal(start)

    def office_time(self) -> time:
        """A time in office hours: mornings 08:30-12:00, afternoons 13:30-17:30, peaked."""
        rng = self.rng
        if rng.random() < 0.55:
            minute = rng.triangular(8 * 60 + 30, 12 * 60, 10 * 60)
        else:
            minute = rng.triangular(13 * 60 + 30, 17 * 60 + 30, 15 * 60)
        m = int(minute)
        return time(m // 60, m % 60, rng.randrange(60))

    def at(self, ordinal: int, after: datetime | None = None) -> datetime:
        """An office-hour instant on `ordinal`, strictly after `after` when that is the same day."""
        day = date.fromordinal(ordinal)
        instant = datetime.combine(day, self.office_time(), self.tz)
        if after is not None and instant <= after:
            instant = after + _seconds(self.rng.randrange(5 * 60, 90 * 60))
            if instant.date() > after.date():  # stay on the same local day
                instant = after + _seconds(1)
        return instant


def _seconds(n: int) -> timedelta:
    return timedelta(seconds=n)


def item_codes(deployment: Deployment) -> dict[str, list[tuple[Item, str]]]:
    """Per supervised department, the (item, code) pairs its cases may name.

    An item with sub-items is reported by its sub-items' codes, one without by
    its own. A supervised department that owns no item (the hotline office,
    the supervision office) handles the shared petition and instruction
    items; with several such departments the shared kinds are dealt out in turn.
    """
    owned = {d.code: list(deployment.items_of(d.code)) for d in deployment.supervised_departments()}
    itemless = [code for code, items in owned.items() if not items]
    kinds = [k for k in SHARED_KINDS if deployment.items_of_kind(k)]
    for n, code in enumerate(itemless):
        mine = kinds if len(itemless) == 1 else [kinds[n % len(kinds)]] if kinds else []
        owned[code] = [i for k in mine for i in deployment.items_of_kind(k)]
    codes: dict[str, list[tuple[Item, str]]] = {}
    for code, items in owned.items():
        pairs = [(i, s.code) for i in items for s in i.sub_items] + [
            (i, i.code) for i in items if not i.sub_items
        ]
        if pairs:
            codes[code] = pairs
    if not codes:
        raise SimulationError(
            f"the deployment in {deployment.directory} has no supervised department with items "
            "to simulate; mark departments `supervised: true` in departments.yaml"
        )
    return codes


class _Planner:
    """Plans the cases of one year (see `plan_cases`)."""

    def __init__(self, deployment: Deployment, rng: random.Random, year: int) -> None:
        self.deployment = deployment
        self.rng = rng
        self.year = year
        self.clock = Clock.for_deployment(deployment)
        self.tz = self.clock.tz
        self.days = _Days(self.clock.calendar, self.tz, rng)
        self.start = date(year, 1, 1)
        self.end = date(year + 1, 1, 1)
        self.end_instant = datetime.combine(self.end, time(0), self.tz)
        self.horizon_day = self.days.between(self.end, HORIZON)[-1]
        self.horizon = datetime.combine(HORIZON, time(0), self.tz)
        self.year_days = self.days.between(self.start, self.end)
        codes = item_codes(deployment)
        self.departments = list(codes)
        self.dept_weights = [
            len(codes[d]) ** 0.6 * rng.lognormvariate(0, 0.9) for d in self.departments
        ]
        self.codes = codes
        self.code_weights = {
            d: [
                (2.5 if deployment.limits(c).promised_days == 0 else 1.0)
                * rng.lognormvariate(0, 1.0)
                for _, c in pairs
            ]
            for d, pairs in codes.items()
        }

    # -- acceptances ----------------------------------------------------------------------

    def day_loads(self, days: list[int]) -> list[float]:
        loads = []
        previous = days[0] - 1
        for ordinal in days:
            d = date.fromordinal(ordinal)
            load = WEEKDAY_LOAD[d.weekday()] * MONTH_LOAD[d.month - 1]
            if ordinal - previous > 3:
                load *= AFTER_BREAK_LOAD
            loads.append(load * self.rng.lognormvariate(0, 0.15))
            previous = ordinal
        return loads

    def spread(self, total: int, days: list[int], loads: list[float]) -> list[int]:
        """`total` acceptances over `days` in proportion to `loads`, exactly (largest remainder)."""
        weight = sum(loads)
        shares = [total * w / weight for w in loads]
        counts = [int(s) for s in shares]
        order = sorted(range(len(days)), key=lambda i: (counts[i] - shares[i], i))
        for i in order[: total - sum(counts)]:
            counts[i] += 1
        return counts

    def pick(self, *, not_immediate: bool = False) -> tuple[str, Item, str]:
        rng = self.rng
        for _ in range(10_000):
            (dept,) = rng.choices(self.departments, self.dept_weights)
            pairs = self.codes[dept]
            ((item, code),) = rng.choices(pairs, self.code_weights[dept])
            if not not_immediate or self.deployment.limits(code).promised_days > 0:
                return dept, item, code
        raise SimulationError(
            "no supervised department has an item with a limit above 0 days, so no case "
            "can be carried over into the year; give some items a promised limit"
        )

    def new_case(self, ordinal: int, *, carried: bool = False) -> CasePlan:
        dept, item, code = self.pick(not_immediate=carried)
        promised = self.deployment.limits(code).promised_days
        accepted = self.days.at(ordinal)
        return CasePlan(dept, code, item.kind, accepted, promised)

    def received(self, total: int) -> list[CasePlan]:
        days = self.days.between(self.start, self.end)
        counts = self.spread(total, days, self.day_loads(days))
        return [self.new_case(o) for o, n in zip(days, counts, strict=True) for _ in range(n)]

    def carried_over(self, total: int) -> list[CasePlan]:
        """Accepted in the last quarter of the year before, the later the likelier; each
        close enough to the year's start for its limit to run into it."""
        before = self.days.between(date(self.year - 1, 10, 8), self.start)
        first = self.days.between(self.start, self.end)[0]
        plans = []
        for _ in range(total):
            plan = self.new_case(first, carried=True)
            reach = min(len(before), max(2, int(plan.promised_days * 0.8)))
            back = int(reach * self.rng.random() ** 1.3) + 1
            ordinal = before[-min(back, len(before))]
            plan.accepted = self.days.at(ordinal)
            plans.append(plan)
        return plans

    # -- a case's life --------------------------------------------------------------------

    def live(self, plan: CasePlan) -> None:
        """Add special procedure, extension and close, the close placed around the due date."""
        rng, days = self.rng, self.days
        a_day = plan.accepted.toordinal()
        last = plan.accepted
        if plan.promised_days >= 5 and rng.random() < P_PROCEDURE:
            reasons = list(PROCEDURES)
            (reason,) = rng.choices(reasons, [PROCEDURES[r][0] for r in reasons])
            _, low, high = PROCEDURES[reason]
            requested = rng.randint(low, high)
            start = days.add(a_day, rng.randint(1, max(1, plan.promised_days // 2)))
            s_at = days.at(start, last)
            plan.later.append((s_at, "suspended", {"reason": reason, "days": requested}))
            if rng.random() < 0.15:  # the procedure overruns what it asked for
                ran = requested + rng.randint(1, 4)
            else:
                ran = max(1, round(requested * rng.uniform(0.4, 1.0)))
            last = days.at(days.add(start, ran), s_at)
            plan.later.append((last, "resumed", {}))
        due = self.due(plan)
        if plan.promised_days >= 7 and rng.random() < P_EXTENSION:
            when = max(a_day, last.toordinal(), _back(days, due, rng.randint(0, 2)))
            last = days.at(when, last)
            plan.later.append((last, "extended", {"days": rng.choice((5, 10))}))
            due = self.due(plan)
        self.close_near(plan, due, last)

    def due(self, plan: CasePlan) -> int:
        """The promised due date's ordinal, as the clock says from the events so far.

        Without a special procedure or an extension that is the N-th working day after
        the acceptance (the clock's rule, worked out here without building events)."""
        if not plan.later:
            return self.days.add(plan.accepted.toordinal(), plan.promised_days)
        limits = self.deployment.limits(plan.item)
        result = self.clock.evaluate(plan.events(), limits, self.horizon)
        if result.promised_due is None:  # an accepted case always has one
            raise SimulationError(f"the clock gave case {plan.case_id} no due date")
        return result.promised_due.toordinal()

    def close_near(self, plan: CasePlan, due: int, last: datetime) -> None:
        rng, days = self.rng, self.days
        a_day = plan.accepted.toordinal()
        floor = last.toordinal()
        if rng.random() < P_WITHDRAWN:
            day = max(floor, _pick_between(days, a_day, due, rng))
            plan.later.append((days.at(day, last), "withdrawn", {}))
            return
        (timeliness,) = rng.choices([t for t, _ in TIMELINESS_MIX], [w for _, w in TIMELINESS_MIX])
        if timeliness == "early" and plan.promised_days > 0:
            span = days.count(a_day, due)  # working days from acceptance to the due date
            k = int(rng.triangular(0, span, span * 0.6))
            day = _back(days, due, span - min(k, span - 1)) if span > 1 else a_day
        elif timeliness == "late" or (timeliness == "early" and rng.random() < 0.05):
            day = days.add(due, 1 + int(rng.expovariate(0.6)))
        else:
            day = due
        day = max(day, floor)
        plan.later.append((days.at(day, last), "completed", {"result": self.result(plan)}))

    def result(self, plan: CasePlan) -> str:
        if plan.kind != "approval":
            return "answered"
        roll = self.rng.random()
        return "approved" if roll < 0.9 else "denied" if roll < 0.96 else "other"

    # -- the year's exact shape -----------------------------------------------------------

    def fit(self, plans: list[CasePlan], open_at_end: int) -> None:
        """Move closes so that exactly `open_at_end` cases are open when the year ends:
        those that would close last stay open (most close next year, a few never); every
        other closes within the year. A carried-over case never closes before the year."""
        start = datetime.combine(self.start, time(0), self.tz)
        first = self.year_days[0]
        for plan in plans:
            close = plan.close
            if plan.accepted < start and close is not None and close[0] < start:
                day = self.days.add(first, int(self.rng.expovariate(0.25)))
                plan.later[-1] = (self.days.at(day, plan.accepted), close[1], close[2])
        never = datetime.max.replace(tzinfo=self.tz)
        order = sorted(
            range(len(plans)),
            key=lambda i: (c[0] if (c := plans[i].close) else never, i),
            reverse=True,
        )
        staying = set(order[:open_at_end])
        for i, plan in enumerate(plans):
            close = plan.close
            if i in staying:
                if close is not None and close[0].toordinal() > self.horizon_day:
                    plan.later.pop()  # it would close after the horizon: still open
                if close is None or close[0] >= self.end_instant:
                    continue
                plan.later.pop()
                if self.rng.random() < P_NEVER_CLOSED:
                    continue
                day = self.days.add(self.year_days[-1], 1)
                day = self.days.add(day, int(self.rng.expovariate(0.12)))
                if day <= self.horizon_day:
                    after = plan.later[-1][0] if plan.later else plan.accepted
                    plan.later.append((self.days.at(day, after), close[1], close[2]))
            elif close is None or close[0] >= self.end_instant:
                self.close_within(plan, close)

    def close_within(
        self, plan: CasePlan, close: tuple[datetime, EventType, dict[str, object]] | None
    ) -> None:
        """Close `plan` before the year ends, dropping what it planned after that."""
        if close is not None:
            plan.later.pop()
        plan.later = [e for e in plan.later if e[0] < self.end_instant]
        after = plan.later[-1][0] if plan.later else plan.accepted
        floor = after.toordinal()
        window = [o for o in self.year_days if o >= floor] or self.year_days[-1:]
        day = self.rng.choice(window[-10:])  # the year-end push
        at = self.days.at(day, after)
        if at >= self.end_instant:  # no time left that day: the year's last second
            at = self.end_instant - _seconds(1)
        if close is None:
            plan.later.append((at, "completed", {"result": "approved"}))
        else:
            plan.later.append((at, close[1], close[2]))

    def steps(self, plan: CasePlan) -> None:
        """Workflow steps on working days between the acceptance and the close (or, for a
        case never closed, its first three weeks), in office hours."""
        rng, days = self.rng, self.days
        names = STEPS.get(plan.kind, STEPS["approval"])
        count = rng.choices((0, 1, 2, 3), (0.3, 0.3, 0.25, 0.15))[0]
        if not count:
            return
        close = plan.close
        a_day = plan.accepted.toordinal()
        last = close[0].toordinal() if close else min(days.add(a_day, 15), self.horizon_day)
        span = days.count(a_day, last)
        picked = sorted(days.add(a_day, rng.randint(0, span)) for _ in range(count))
        steps: list[tuple[datetime, EventType, dict[str, object]]] = []
        after = plan.accepted
        for k, day in enumerate(picked):
            at = days.at(day, after)
            if at <= after or (close is not None and at >= close[0]):
                continue
            fields: dict[str, object] = {
                "step": names[min(k, len(names) - 1)],
                "handler": rng.choice(HANDLERS),
                "step_days": rng.randint(1, 5),
            }
            steps.append((at, "step", fields))
            after = at
        if steps:
            plan.later = sorted(plan.later + steps, key=lambda e: e[0])


def _back(days: _Days, ordinal: int, n: int) -> int:
    """The working day `n` working days before `ordinal` (a working day)."""
    if n <= 0:
        return ordinal
    cal = days.cal
    return cal.workday_ordinals[cal.count_ordinal(ordinal) - 1 - n]


def _pick_between(days: _Days, first: int, last: int, rng: random.Random) -> int:
    span = days.count(first, last)
    return days.add(first, rng.randint(0, span)) if span > 0 else first


def plan_cases(
    deployment: Deployment, rng: random.Random, shape: YearShape, year: int = REFERENCE_YEAR
) -> list[CasePlan]:
    """The year's valid cases, carried-over ones first, each with its events planned.

    Case ids are ``DEPT-YYYY-NNNNNN``, numbered per department and acceptance
    year in order of acceptance, as a workflow system numbers its cases.
    """
    planner = _Planner(deployment, rng, year)
    plans = planner.carried_over(shape.carried_over) + planner.received(shape.received)
    for plan in plans:
        planner.live(plan)
    planner.fit(plans, shape.open_at_end)
    for plan in plans:
        planner.steps(plan)
    numbers: dict[tuple[str, int], int] = {}
    for plan in sorted(plans, key=lambda p: (p.accepted, p.department, p.item)):
        key = (plan.department, plan.accepted.year)
        numbers[key] = numbers.get(key, 0) + 1
        plan.case_id = f"{plan.department.upper()}-{plan.accepted.year}-{numbers[key]:06d}"
    return plans
