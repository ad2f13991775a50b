"""Benchmark of the case clock against a naive day-walking baseline.

Builds seeded synthetic cases (suspensions, extensions, duplicates, shuffled
events), checks on a sample that `Clock.evaluate` and the baseline agree on
every due date, level and card, then times both on one core and prints cases
per second and their ratio. The baseline is measured in the same run because
the machines are shared and noisy: the ratio is the figure to compare.

    python bench/clock.py [--cases N] [--baseline-cases M] [--oracle-cases K]
                          [--seed S] [--repeat R] [--strict]

Exit status: 2 when the clock and the baseline disagree (the first differing
cases are printed in full), 1 when a target is missed and ``--strict`` is
given, else 0. See docs/benchmarks.md, "Case clock".
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import sys
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Sequence, Set
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta, timezone
from datetime import time as clock_time
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.table import Table

from casework.calendar import WorkCalendar
from casework.clock import CARD_LEVELS, LEVELS, CaseClock, Clock, Limits
from casework.events import SUSPEND_REASONS, TYPE_RANK, CaseEvent

TZ_NAME = "Asia/Shanghai"
CST = timezone(timedelta(hours=8))  # how most workflow systems stamp their events
AT = datetime(2026, 6, 30, 12, 0, tzinfo=CST)  # every case is evaluated at this instant
TARGET_RATE = 200_000  # cases/s, one core
TARGET_RATIO = 20.0  # times the baseline
ONE_DAY = timedelta(days=1)
_EPOCH = date(1970, 1, 1).toordinal()

# -- synthetic cases -------------------------------------------------------------------------

#: (promised, legal, weight): the catalog's limit profiles; 0/0 is an immediate item.
PROFILES = ((0, 0, 4), (5, 10, 20), (7, 20, 20), (10, 20, 26), (15, 30, 20), (10, 30, 10))
#: Working days a special procedure typically requests, by reason.
REASON_DAYS: dict[str, tuple[int, ...]] = {
    "hearing": (10, 20),
    "tender": (20, 30),
    "auction": (20, 30),
    "inspection": (5, 10),
    "testing": (10, 15, 30),
    "quarantine": (5, 10),
    "appraisal": (15, 20),
    "expert_review": (10, 15),
    "supplement": (3, 5),
    "other": (5, 10),
}
STEPS = ("初审", "复审", "审核", "决定", "送达")


class SyntheticCase(NamedTuple):
    case_id: str
    limits: Limits
    events: list[CaseEvent]


def package_days() -> tuple[frozenset[date], frozenset[date]]:
    """Holidays and make-up working days of the `chinese-calendar` package."""
    from chinese_calendar import constants

    return frozenset(constants.holidays), frozenset(constants.workdays)


def _midnight_ts(day: date) -> int:
    """POSIX time of local (+08:00) midnight starting `day`."""
    return (day.toordinal() - _EPOCH) * 86400 - 8 * 3600


class CaseGenerator:
    """Seeded synthetic cases over 2018-2026, realistic enough to exercise every clock rule.

    ~30% stay open (most accepted within their promised limit before the
    instant, some stuck for years); ~20% have one or two special procedures
    (resumed the same day, early, on time or late, or still open); ~10% an
    extension; ~3% a redelivered event; each case's events are shuffled.
    Instants fall in working hours, some at midnight, 15% stamped in UTC.
    `stats` counts what was built.
    """

    def __init__(self, seed: int, holidays: Set[date], workdays: Set[date]) -> None:
        self.rng = random.Random(seed)
        self.days: list[date] = []
        day = date(2017, 12, 1)
        while day <= date(2028, 12, 31):
            if day in workdays or (day.weekday() < 5 and day not in holidays):
                self.days.append(day)
            day += ONE_DAY
        self.first = bisect_left(self.days, date(2018, 1, 1))
        self.last = bisect_left(self.days, AT.date()) - 1  # the last working day before AT's
        weights = [w for _, _, w in PROFILES]
        self.catalog: list[tuple[str, str, Limits]] = []
        for k in range(170):  # 170 items over 43 departments, as in the reference city
            promised, legal, _ = self.rng.choices(PROFILES, weights)[0]
            warn = 3 if self.rng.random() < 0.1 else 2
            dept = f"D{k % 43 + 1:02d}"
            self.catalog.append((dept, f"{dept}-{k:03d}", Limits(promised, legal, warn)))
        self.stats: Counter[str] = Counter()

    def cases(self, n: int) -> list[SyntheticCase]:
        enabled = gc.isenabled()
        gc.disable()  # millions of new objects, no garbage: full collections would find nothing
        try:
            return [self.case(k) for k in range(n)]
        finally:
            if enabled:
                gc.enable()

    def _at(self, index: int, after: int) -> int:
        """A working-hours instant on working day `index`, and later than `after`."""
        x = self.rng.randrange(27000)  # 08:30-12:00 and 13:30-17:30
        ts = _midnight_ts(self.days[index]) + (30600 + x if x < 12600 else 36000 + x)
        return ts if ts > after else after + self.rng.randint(60, 1800)

    def case(self, n: int) -> SyntheticCase:
        rng, r, stats = self.rng, self.rng.random, self.stats
        dept, item, limits = rng.choice(self.catalog)
        is_open = r() < 0.30
        if is_open and r() < 0.85:  # open cases are mostly recent ones, within their limits
            i = self.last - rng.randint(0, limits.promised_days + 4)
        else:
            i = rng.randint(self.first, self.last)
        case_id = f"{self.days[i].year}{dept}{n:07d}"
        events: list[CaseEvent] = []

        def add(kind: Any, ts: int, **fields: Any) -> int:
            at = datetime.fromtimestamp(ts, UTC if r() < 0.15 else CST)
            eid = f"{case_id}-{len(events) + 1}"
            events.append(CaseEvent(eid, case_id, dept, item, kind, at, **fields))
            return ts

        promised = limits.promised_days
        override: dict[str, int] = {}
        if promised > 3 and r() < 0.03:  # the accepted event promises less than the catalog
            promised -= rng.randint(1, 3)
            override = {"promised_days": promised, "legal_days": limits.legal_days}
        ts = acc_ts = add("accepted", self._at(i, 0), **override)
        cursor, excluded, added = i, 0, 0
        open_procedure: tuple[int, int] | None = None
        plan = ["suspended"] * (0 if r() >= 0.2 else 1 if r() < 0.7 else 2)
        plan += ["extended"] * (0 if r() >= 0.1 else 1 if r() < 0.9 else 2)
        rng.shuffle(plan)
        for k, kind in enumerate(plan):
            due = i + promised + added + excluded  # index of the promised due date
            if kind == "extended":
                days = rng.choice((10, 10, 10, 5, 15, 20, 30))
                j = due - rng.randint(0, 5) if r() < 0.8 else due + rng.randint(1, 5)
                cursor = max(cursor, j)
                ts = add("extended", self._at(cursor, ts), days=days)
                added += days
                stats["extension"] += 1
                continue
            reason = rng.choice(SUSPEND_REASONS)
            days = rng.choice(REASON_DAYS[reason])
            j = cursor + rng.randint(0, max(1, (due - cursor) // 2))
            ts = add("suspended", self._at(j, ts), reason=reason, days=days)
            u = r()
            if u < 0.05:
                back, how = j, "same-day"
            elif u < 0.5:
                back, how = j + rng.randint(1, max(1, days - 1)), "early"
            elif u < 0.65:
                back, how = j + days, "on time"
            elif u < 0.82 or k < len(plan) - 1:
                back, how = j + days + rng.randint(1, 10), "overrun"
            else:
                open_procedure = (j, days)
                stats["suspension open"] += 1
                break
            stats[f"suspension {how}"] += 1
            ts = add("resumed", self._at(back, ts))
            excluded += min(days, back - j)
            cursor = back
        stats["with suspension"] += "suspended" in plan
        stats["with extension"] += "extended" in plan

        close_ts: int | None = None
        if not is_open:
            n_days = promised + added
            if open_procedure is not None:  # closed during the special procedure
                cursor = open_procedure[0] + rng.randint(0, open_procedure[1] + 5)
            else:
                u = r()
                if u < 0.62 and n_days:
                    used = rng.randint(0, n_days - 1)  # early
                elif u < 0.8:
                    used = n_days  # on the due date
                else:
                    used = n_days + rng.randint(1, 20)  # late
                cursor = max(cursor, i + used + excluded)
            v = r()
            if v < 0.02:  # a batch job closing at 00:00, at the start or the end of the day
                ts = max(_midnight_ts(self.days[cursor] + ONE_DAY * (v < 0.01)), ts + 60)
            else:
                ts = self._at(cursor, ts)
            if r() < 0.06:
                close_ts = add("withdrawn", ts)
            else:
                result = rng.choice(("approved",) * 8 + ("denied", "other"))
                close_ts = add("completed", ts, result=result)
        stats["closed" if close_ts is not None else "open"] += 1
        for _ in range(rng.randint(0, 3)):
            step_ts = self._at(rng.randint(i, max(i, cursor)), acc_ts)
            if close_ts is None or step_ts < close_ts:
                add("step", step_ts, step=rng.choice(STEPS), handler=f"h{rng.randint(1, 400):03d}")
        if r() < 0.03:  # an agent's retry delivers one event twice
            events.append(replace(rng.choice(events)))
            stats["duplicate"] += 1
        steps = [e for e in events if e.type == "step"]
        if steps and r() < 0.01:  # a resent step with different content under the same id
            events.append(replace(steps[0], handler="h999"))
            stats["conflicting duplicate"] += 1
        rng.shuffle(events)
        stats["events"] += len(events)
        return SyntheticCase(case_id, limits, events)


# -- the baseline ----------------------------------------------------------------------------


class Outcome(NamedTuple):
    """What both implementations must agree on, for one case at one instant."""

    state: str
    level: str
    promised_due: date | None
    legal_due: date | None
    cards: tuple[tuple[str, datetime], ...]
    timeliness: str | None
    days_used: int | None
    remaining_days: int


INVALID = Outcome("invalid", "", None, None, (), None, None, 0)


def esup_outcome(r: CaseClock) -> Outcome:
    cards = tuple((c.level, c.at) for c in r.cards)
    due = (r.promised_due, r.legal_due)
    return Outcome(r.state, r.level, *due, cards, r.timeliness, r.days_used, r.remaining_days)


class DayWalkClock:
    """The rules of the case clock read literally, one calendar day at a time.

    What a developer writes first: a set of holidays and make-up days, a loop
    from the acceptance date that counts working days outside suspensions, and
    at every midnight and every extension the level the case has then; a card
    is the first instant the case, still open, is at that level or above.
    Suspensions only ever exclude days after they start, so judging a day with
    every suspension known at the evaluation instant gives the same count as
    with those known on that day. While a procedure is open the case shows
    `suspended`, but its cards follow the counted days all the same (days past
    the requested ones count again). Slow by design; the oracle for `Clock`.
    """

    def __init__(self, holidays: Set[date], workdays: Set[date], tz: str = TZ_NAME) -> None:
        self.holidays = set(holidays)
        self.workdays = set(workdays)
        self.tz = ZoneInfo(tz)

    def is_working_day(self, day: date) -> bool:
        return day in self.workdays or (day.weekday() < 5 and day not in self.holidays)

    def evaluate(self, events: Sequence[CaseEvent], limits: Limits, at: datetime) -> Outcome:
        tz = self.tz
        known: dict[str, CaseEvent] = {}  # one event per id: the earliest
        for e in events:
            kept = known.get(e.event_id)
            if e.at <= at and (
                kept is None or (e.at, TYPE_RANK[e.type]) < (kept.at, TYPE_RANK[kept.type])
            ):
                known[e.event_id] = e
        accepted = closed = suspended = None
        suspensions: list[tuple[CaseEvent, datetime | None]] = []
        extensions: list[CaseEvent] = []
        for e in sorted(known.values(), key=lambda e: (e.at, TYPE_RANK[e.type], e.event_id)):
            if accepted is None:
                accepted = e if e.type == "accepted" else None
            elif closed is not None:
                pass  # nothing happens to a closed case
            elif e.type == "suspended" and suspended is None:
                suspended = e
            elif e.type == "resumed" and suspended is not None:
                suspensions.append((suspended, e.at))
                suspended = None
            elif e.type == "extended":
                extensions.append(e)
            elif e.type in ("completed", "withdrawn"):
                closed = e
        if accepted is None:
            return INVALID
        if suspended is not None:  # still open, or ended by the case closing
            suspensions.append((suspended, closed.at if closed else None))

        promised = (
            limits.promised_days if accepted.promised_days is None else accepted.promised_days
        )
        legal = limits.legal_days if accepted.legal_days is None else accepted.legal_days
        legal = max(legal, promised)  # the clock's documented anomaly: a legal limit below
        # the promised one is raised to it
        added = sum(e.days or 0 for e in extensions)
        n_promised, n_legal = promised + added, legal + added
        # [start date, resume date or None, working days it may still exclude]
        windows: list[list[Any]] = [
            [s.at.astimezone(tz).date(), r and r.astimezone(tz).date(), s.days or 0]
            for s, r in suspensions
        ]
        day_a = accepted.at.astimezone(tz).date()
        last_day = (closed.at if closed else at).astimezone(tz).date()
        due_p = day_a if n_promised == 0 else None
        due_l = day_a if n_legal == 0 else None
        counted, before = 0, -1  # counted days through `day`, and through the day before
        at_last = (0, -1)
        cards: dict[str, datetime] = {}
        day = day_a
        while True:
            if day > day_a:
                before = counted
                if self.is_working_day(day):
                    for w in windows:
                        if w[0] < day and (w[1] is None or day <= w[1]) and w[2] > 0:
                            w[2] -= 1
                            break
                    else:
                        counted += 1
                        if counted == n_promised:
                            due_p = day
                        if counted == n_legal:
                            due_l = day
            if day <= last_day:
                at_last = (counted, before)
                start = accepted.at if day == day_a else datetime.combine(day, clock_time(), tz)
                today = sorted(e.at for e in extensions if e.at.astimezone(tz).date() == day)
                moments = [start, *today]
                for t in moments:
                    if t > at or (closed is not None and t >= closed.at):
                        continue
                    more = sum(e.days or 0 for e in extensions if e.at <= t)
                    level = _level(counted, before, promised + more, legal + more, limits)
                    for name in CARD_LEVELS[:level]:
                        cards.setdefault(name, t)
            if day >= last_day and due_p is not None and due_l is not None:
                break
            day += ONE_DAY
        issued = tuple((name, cards[name]) for name in CARD_LEVELS if name in cards)
        if closed is None:
            done, before = at_last
            level_now = LEVELS[_level(done, before, n_promised, n_legal, limits)]
            level_name = "suspended" if suspended is not None else level_now
            remaining = max(0, n_promised - done)
            return Outcome("open", level_name, due_p, due_l, issued, None, None, remaining)
        used = at_last[0]
        timeliness = None
        if closed.type == "completed":
            if n_promised == 0 and last_day == day_a:
                timeliness = "immediate"
            elif used < n_promised:
                timeliness = "early"
            else:
                timeliness = "on_time" if last_day == due_p else "late"
        return Outcome("closed", closed.type, due_p, due_l, issued, timeliness, used, 0)


def _level(counted: int, before: int, n_promised: int, n_legal: int, limits: Limits) -> int:
    """0 normal, 1 warning, 2 yellow, 3 red, for a day with `counted` counted days through it
    and `before` through the day before (-1 on the acceptance day)."""
    if before >= n_legal:
        return 3  # past the legal due date
    if before >= n_promised:
        return 2
    return 1 if n_promised - counted <= limits.warn_days else 0


# -- oracle ----------------------------------------------------------------------------------


@dataclass
class OracleReport:
    compared: int = 0
    agreed: int = 0
    differences: list[tuple[SyntheticCase, Outcome, Outcome]] = field(default_factory=list)
    levels: Counter[str] = field(default_factory=Counter)


def compare(
    cases: Sequence[SyntheticCase], clock: Clock, baseline: DayWalkClock, keep: int = 5
) -> OracleReport:
    """Evaluate every case at `AT` with both; count agreements, keep the first differences."""
    report = OracleReport()
    for case in cases:
        mine = esup_outcome(clock.evaluate(case.events, case.limits, AT))
        theirs = baseline.evaluate(case.events, case.limits, AT)
        report.compared += 1
        report.levels[mine.level] += 1
        if mine == theirs:
            report.agreed += 1
        elif len(report.differences) < keep:
            report.differences.append((case, mine, theirs))
    return report


def run_oracle(n_cases: int, seed: int = 1) -> OracleReport:
    """Build `n_cases` synthetic cases and compare the clock with the baseline on them."""
    holidays, workdays = package_days()
    cases = CaseGenerator(seed, holidays, workdays).cases(n_cases)
    clock = Clock(WorkCalendar.from_package(), TZ_NAME)
    return compare(cases, clock, DayWalkClock(holidays, workdays))


def describe(case: SyntheticCase, mine: Outcome, theirs: Outcome) -> str:
    """A differing case in full: limits, events in time order, and the fields that differ."""
    lim = case.limits
    lines = [
        f"case {case.case_id}: promised {lim.promised_days}, legal {lim.legal_days}, "
        f"warn {lim.warn_days}, evaluated at {AT.isoformat()}"
    ]
    for e in sorted(case.events, key=lambda e: (e.at, TYPE_RANK[e.type])):
        extra = {k: getattr(e, k) for k in ("promised_days", "legal_days", "days") if getattr(e, k)}
        local = e.at.astimezone(ZoneInfo(TZ_NAME)).isoformat()
        lines.append(f"  {e.event_id:<24} {e.type:<10} {local} {extra or ''}")
    for name, a, b in zip(Outcome._fields, mine, theirs, strict=True):
        if a != b:
            lines.append(f"  {name}: esup {_show(a)}\n  {' ' * len(name)}  base {_show(b)}")
    return "\n".join(lines)


def _show(value: object) -> str:
    if isinstance(value, tuple):  # cards
        local = ZoneInfo(TZ_NAME)
        return ", ".join(f"{lvl} {t.astimezone(local):%Y-%m-%d %H:%M:%S}" for lvl, t in value)
    return str(value)


# -- timing ----------------------------------------------------------------------------------


def best_time(
    evaluate: Callable[..., object], cases: Sequence[SyntheticCase], repeat: int
) -> float:
    """Best CPU time (process time, one core) over `repeat` runs of `evaluate` on every case."""
    pairs = [(c.events, c.limits) for c in cases]
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        for events, limits in pairs:
            evaluate(events, limits, AT)
        best = min(best, time.process_time() - start)
    return best


def best_sweep_time(clock: Clock, cases: Sequence[SyntheticCase], repeat: int) -> float:
    """Best CPU time of one `Clock.evaluate_many` sweep over every case at one instant."""
    pairs = [(c.events, c.limits) for c in cases]
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        for _result in clock.evaluate_many(pairs, AT):
            pass
        best = min(best, time.process_time() - start)
    return best


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=_count, default=1_000_000, help="cases timed for esup")
    parser.add_argument(
        "--baseline-cases", type=_count, default=50_000, help="cases timed for the baseline"
    )
    parser.add_argument("--oracle-cases", type=_count, default=20_000, help="cases checked by both")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=_count, default=3, help="timed runs; the best counts")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    out = Console(highlight=False)

    holidays, workdays = package_days()
    clock = Clock(WorkCalendar.from_package(), TZ_NAME)
    baseline = DayWalkClock(holidays, workdays)
    rss_before = peak_rss_mib()
    started = time.perf_counter()
    generator = CaseGenerator(args.seed, holidays, workdays)
    cases = generator.cases(max(args.cases, args.baseline_cases, args.oracle_cases))
    s = generator.stats
    total = len(cases)
    out.print(
        f"built {total:,} cases, {s['events']:,} events in {time.perf_counter() - started:.0f} s "
        f"(seed {args.seed}): {s['with suspension'] / total:.1%} with a special procedure "
        f"({s['suspension early']:,} resumed early, {s['suspension on time']:,} on time, "
        f"{s['suspension overrun']:,} overrun, {s['suspension same-day']:,} same day, "
        f"{s['suspension open']:,} open), {s['with extension'] / total:.1%} extended, "
        f"{s['closed'] / total:.1%} closed, {s['duplicate'] + s['conflicting duplicate']:,} "
        f"duplicate event ids; evaluated at {AT.isoformat()}"
    )

    report = compare(cases[: args.oracle_cases], clock, baseline)
    levels = ", ".join(f"{k} {v / report.compared:.1%}" for k, v in report.levels.most_common())
    out.print(f"levels at the instant: {levels}")
    out.print(f"oracle: {report.agreed:,} of {report.compared:,} cases agree with the baseline")
    if report.agreed != report.compared:
        for diff in report.differences:
            print(describe(*diff), file=sys.stderr)
        return 2

    gc.collect()
    gc.freeze()  # the inputs stay; the collector need not scan them while timing
    n, m, repeat = args.cases, args.baseline_cases, args.repeat
    read = lambda ev, lim, at: esup_outcome(clock.evaluate(ev, lim, at))  # noqa: E731
    timed = [
        ("esup Clock.evaluate_many (a sweep)", n, best_sweep_time(clock, cases[:n], repeat)),
        ("esup Clock.evaluate, one call each", n, best_time(clock.evaluate, cases[:n], repeat)),
        ("esup, outputs read", n, best_time(read, cases[:n], repeat)),
        ("baseline: day walk", m, best_time(baseline.evaluate, cases[:m], repeat)),
    ]
    esup_rate = n / timed[0][2]
    base_rate = m / timed[3][2]
    ratio = esup_rate / base_rate
    table = Table(title=f"Case clock: best of {repeat}, CPU time on one core")
    for name in ("implementation", "cases", "CPU s", "cases/s", "× baseline"):
        table.add_column(name, justify="left" if name == "implementation" else "right")
    for name, count, secs in timed:
        rate = count / secs
        table.add_row(name, f"{count:,}", f"{secs:.2f}", f"{rate:,.0f}", f"{rate / base_rate:.1f}")
    out.print(table)
    out.print(
        f"peak RSS {peak_rss_mib():,.0f} MiB, {rss_before:,.0f} MiB before building the inputs"
    )

    rate_ok = esup_rate >= TARGET_RATE
    ratio_ok = ratio >= TARGET_RATIO
    verdict = {True: "PASS", False: "FAIL"}
    print(
        f"target clock >= {TARGET_RATE:,} cases/s: {verdict[rate_ok]} (measured {esup_rate:,.0f})"
    )
    print(f"target ratio >= {TARGET_RATIO:.0f}x: {verdict[ratio_ok]} (measured {ratio:.1f}x)")
    return 1 if args.strict and not (rate_ok and ratio_ok) else 0


if __name__ == "__main__":
    sys.exit(main())
