"""The case clock: due dates, levels and cards of one case from its events.

The rules are those of docs/design.md, "The case clock". In short, for a case
accepted on local date A:

- counted days are the working days d > A, except those with S < d <= R for a
  suspension from date S to resume date R (R = infinity while it is open); a
  suspension excludes at most its requested `days` working days;
- the promised (legal) due date is the N-th counted day, N = the promised
  (legal) limit plus every extension's days; A itself when N = 0; a deadline
  is the end of its due date (the next local midnight);
- an open case is `suspended` while a suspension is open, else `red` from the
  legal deadline, `yellow` from the promised deadline, `warning` when at most
  `warn_days` counted days remain, else `normal`;
- a card (warning, yellow, red) is issued at the first instant the case, still
  open, reaches that level; cards never go away (only an appeal voids one,
  which is the server's business, not the clock's);
- a special procedure has its own levels: `warning` when at most
  `procedure_warn_days` of its requested days remain, `yellow` once they are
  exceeded, `red` once exceeded by more than one day.

`Clock.evaluate` is a pure function of the events, the item's limits, the
calendar and the instant `at`: events stamped after `at` are not yet known,
the same events in any order give the same result, an `event_id` counts once,
and contradictory events are reported in `anomalies`, never raised.

Internally instants are POSIX timestamps (float seconds) and dates are
proleptic Gregorian ordinals; the result converts them to `datetime` and
`date` on access, so that evaluating a million cases stays cheap.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime, tzinfo
from functools import partial
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from casework.calendar import WorkCalendar
from casework.caselife import simple_life, walk_life
from casework.casestate import (
    CARD_LEVELS,
    LEVELS,
    NEVER,
    TIMELINESS,
    Anomaly,
    Card,
    CaseClock,
    Limits,
    Suspension,
)
from casework.errors import CalendarRangeError
from casework.events import CaseEvent
from casework.localtime import DAY_SECONDS, EPOCH_ORDINAL, LocalTime

if TYPE_CHECKING:
    from casework.config import Deployment

__all__ = [
    "CARD_LEVELS",
    "LEVELS",
    "TIMELINESS",
    "Anomaly",
    "Card",
    "CaseClock",
    "Clock",
    "Limits",
    "Suspension",
]


class Clock:
    """Evaluates case clocks against one calendar and time zone.

    `procedure_warn_days` is how many working days before a special procedure's
    requested days end it reaches warning (default 2).
    """

    def __init__(
        self,
        calendar: WorkCalendar,
        tz: tzinfo | str = "Asia/Shanghai",
        *,
        procedure_warn_days: int = 2,
    ) -> None:
        self.calendar = calendar
        self.tz = ZoneInfo(tz) if isinstance(tz, str) else tz
        self.procedure_warn_days = procedure_warn_days
        self._zone = LocalTime(self.tz, calendar)
        #: What `_evaluate` reads on every case, unpacked in one step.
        self._arrays = (
            self._zone.day,
            self._zone.offset,
            self._zone.midnights,
            calendar.cum,
            calendar.workday_ordinals,
            calendar.gaps,
            calendar.base,
        )

    @classmethod
    def for_deployment(cls, deployment: Deployment) -> Clock:
        """The clock a deployment's configuration describes (calendar, zone, procedure warning)."""
        return cls(
            WorkCalendar.from_config(deployment.calendar),
            deployment.settings.timezone,
            procedure_warn_days=deployment.settings.procedure_warn_days,
        )

    def evaluate(self, events: list[CaseEvent], limits: Limits, at: datetime) -> CaseClock:
        """The case's clock at instant `at` (timezone-aware), from the events known then.

        `limits` are the catalog's for the case's item; an ``accepted`` event's
        `promised_days` / `legal_days` override them. Raises `CalendarRangeError`
        only when a date falls outside the calendar's window.
        """
        try:
            return self._evaluate(events, limits, at, at.timestamp())
        except IndexError as exc:  # a working-day index past the window's end
            raise self._beyond_window(events) from exc

    def evaluate_many(
        self, cases: Iterable[tuple[list[CaseEvent], Limits]], at: datetime
    ) -> Iterator[CaseClock]:
        """`evaluate` for many cases at one instant (a scheduler's sweep, a recompute)."""
        now = at.timestamp()
        evaluate = self._evaluate
        for events, limits in cases:
            try:
                result = evaluate(events, limits, at, now)
            except IndexError as exc:
                raise self._beyond_window(events) from exc
            yield result

    def _beyond_window(self, events: list[CaseEvent]) -> CalendarRangeError:
        case = f"{events[0].department}/{events[0].case_id}" if events else "?"
        cal = self.calendar
        return CalendarRangeError(f"A date of case {case}", cal.first_day, cal.last_day)

    def _evaluate(
        self, events: list[CaseEvent], limits: Limits, at: datetime, now: float
    ) -> CaseClock:
        # Written for speed (the server re-evaluates every open case, the benchmark
        # a million): local variables, array look-ups, no per-day loops.
        result = _new(CaseClock)  # no __init__: evaluate sets every field a case has
        result._zone = self._zone
        result.at = at

        # 1-2. The case's life as known at `now`: most cases can be read in any
        #      order; anything else is walked in canonical order.
        life = simple_life(events, now) or walk_life(events, now)
        walked, close_ts, outcome, open_susp, susps, exts, anomalies = life
        if walked is None:
            if not anomalies:
                anomalies = [Anomaly("", f"no event at or before {at.isoformat()}")]
            result.anomalies = tuple(anomalies)
            return result
        accepted = walked
        acc_ts = accepted.ts

        # 3. Limits and the acceptance date. Every later date is on or after A, so one
        #    check of A against the window's start guards every array look-up below;
        #    running off the window's end raises IndexError (see `evaluate`).
        promised = accepted.promised_days
        if promised is None:
            promised = limits.promised_days
        legal = accepted.legal_days
        if legal is None:
            legal = limits.legal_days
        if legal < promised:
            anomalies = [
                *anomalies,
                Anomaly(accepted.event_id, f"legal limit {legal} < promised {promised}; using it"),
            ]
            legal = promised
        # Local dates by arithmetic where the zone's offset is fixed (`off`).
        day, off, mids, cum, wd, gaps, base = self._arrays
        day_a = (
            int((acc_ts + off) // DAY_SECONDS) + EPOCH_ORDINAL if off is not None else day(acc_ts)
        )
        if day_a < base:
            cal = self.calendar
            raise CalendarRangeError(date.fromordinal(day_a), cal.first_day, cal.last_day)
        b = cum[day_a - base]  # index of the first working day after A

        # 4. Working-day index ranges [lo, hi) the suspensions exclude, in order.
        ranges: list[tuple[int, int, int]] = []
        firsts: list[int] = []
        if susps:
            for n, (s_ts, r_ts, e) in enumerate(susps):
                lo = cum[day(s_ts) - base]
                firsts.append(lo)
                cap = e.days or 0
                if r_ts != NEVER:
                    cap = min(cap, cum[day(r_ts) - base] - lo)
                if cap > 0:
                    ranges.append((lo, lo + cap, n))

        warn = limits.warn_days

        # 5. Cards, segment by segment: only extensions move the thresholds in time.
        #    A card needs the case open at its instant, and the instant reached.
        cards: list[tuple[str, float]] = []
        n_p, n_l = promised, legal
        seg_start = acc_ts
        reached = 0
        j = 0
        while True:
            # Due dates are the n-th counted days; a deadline is the next midnight.
            k = n_p - warn  # warning from acceptance when the whole limit is within it
            if ranges:
                due_p = _kth(wd, b, ranges, n_p) if n_p > 0 else day_a
                due_l = _kth(wd, b, ranges, n_l) if n_l > 0 else day_a
                warning = mids[_kth(wd, b, ranges, k) - base] if k > 0 else acc_ts
            else:
                due_p = wd[b + n_p - 1] if n_p > 0 else day_a
                due_l = wd[b + n_l - 1] if n_l > 0 else day_a
                warning = mids[wd[b + k - 1] - base] if k > 0 else acc_ts
            red = mids[due_l + 1 - base]
            yellow = mids[due_p + 1 - base]
            if yellow > red:
                yellow = red
            if warning > yellow:
                warning = yellow
            seg_end = exts[j][0] if j < len(exts) else NEVER
            while reached < 3:
                t = (warning, yellow, red)[reached]
                if t < seg_start:
                    t = seg_start
                if t < seg_end and t < close_ts and t <= now:
                    cards.append((CARD_LEVELS[reached], t))
                    reached += 1
                else:
                    break
            if j == len(exts):
                break
            n_p += exts[j][1]
            n_l += exts[j][1]
            seg_start = seg_end
            j += 1
        if exts:
            result.extended_days = n_p - promised
            result._extensions = tuple(exts)
        result._accepted = acc_ts
        result._promised_due = due_p
        result._legal_due = due_l
        result.promised_days = n_p
        result.legal_days = n_l
        result.warn_days = warn
        if cards:
            result._cards = tuple(cards)

        # 6. Special procedures: their own levels are worked out when first read.
        if susps:
            result._procedures = partial(self._suspensions, susps, firsts, now, close_ts)
            result._ranges = tuple(ranges)

        # 7. Where the case stands at `at`. Counted days through a date D are the
        #    working days in (A, D] less those the procedures took.
        end = close_ts if outcome is not None else now
        day_end = int((end + off) // DAY_SECONDS) + EPOCH_ORDINAL if off is not None else day(end)
        upto = cum[day_end - base]
        done = upto - b
        for lo, hi, _ in ranges:
            if lo >= upto:
                break
            done -= (hi if hi < upto else upto) - lo
        if done > n_p:
            result.overdue_days = done - n_p
        if outcome is not None:
            result.state = "closed"
            result.level = outcome
            result._closed = close_ts
            result.outcome = outcome
            result.days_used = done
            if outcome == "completed":
                if day_end < due_p:
                    result.timeliness = "early"
                elif day_end == due_p:
                    result.timeliness = "immediate" if n_p == 0 else "on_time"
                else:
                    result.timeliness = "late"
        else:
            result.state = "open"
            if done < n_p:
                result.remaining_days = n_p - done
            if open_susp is not None:
                result.level = "suspended"
            elif now >= red:
                result.level = "red"
            elif now >= yellow:
                result.level = "yellow"
            elif now >= warning:
                result.level = "warning"
            else:
                result.level = "normal"
            if open_susp is None:
                if now < warning:
                    nxt = warning
                elif now < yellow:
                    nxt = yellow
                else:
                    nxt = red if now < red else NEVER
            else:  # the level shows `suspended`: only a card not yet issued changes anything
                nxt = NEVER
                for t in (warning, yellow, red)[len(cards) :]:
                    if now < t:
                        nxt = t
                        break
                s_ts, _, e = susps[-1]
                for t in self._procedure_thresholds(firsts[-1], e.days or 0, s_ts):
                    if now < t < nxt:
                        nxt = t
            result._next = nxt

        # 8. Whether any date that mattered lies in a year the calendar does not know.
        last = due_l if due_l > day_end else day_end
        if gaps[last - base + 1] != gaps[day_a - base]:
            result.uncovered_years = self.calendar.uncovered_years_ordinal(day_a, last)
        if anomalies:
            result.anomalies = tuple(anomalies)
        return result

    def _suspensions(
        self,
        susps: Sequence[tuple[float, float, CaseEvent]],
        firsts: Sequence[int],
        now: float,
        close_ts: float,
    ) -> tuple[Suspension, ...]:
        return tuple(
            self._suspension(s_ts, r_ts, e, first, now, close_ts)
            for (s_ts, r_ts, e), first in zip(susps, firsts, strict=True)
        )

    def _procedure_thresholds(self, first: int, days: int, s_ts: float) -> tuple[float, ...]:
        """Instants a procedure reaches warning, yellow and red; `first` is the window
        index of the first working day after it started."""
        if not days:
            return (NEVER, NEVER, NEVER)
        mids = self._zone.midnights
        wd = self.calendar.workday_ordinals
        base = self.calendar.base
        k = days - self.procedure_warn_days
        return (
            mids[wd[first + k - 1] - base] if k > 0 else s_ts,
            mids[wd[first + days - 1] + 1 - base],
            mids[wd[first + days] + 1 - base],
        )

    def _suspension(
        self, s_ts: float, r_ts: float, e: CaseEvent, first: int, now: float, close_ts: float
    ) -> Suspension:
        """The procedure as of `now`."""
        zone = self._zone
        cal = self.calendar
        days = e.days or 0
        th = self._procedure_thresholds(first, days, s_ts)
        stop = r_ts if r_ts < close_ts else close_ts  # the procedure ran until then
        if now < stop:
            stop = now
        flags: tuple[tuple[str, float], ...] = ()
        warning, yellow, red = th
        if warning <= stop and warning < r_ts and warning < close_ts:
            flags = (("warning", warning),)
            if yellow <= stop and yellow < r_ts and yellow < close_ts:
                flags += (("yellow", yellow),)
                if red <= stop and red < r_ts and red < close_ts:
                    flags += (("red", red),)
        elapsed = cal.cum[zone.day(stop) - cal.base] - first
        procedure = Suspension(
            e.reason or "other",
            days,
            s_ts,
            None if r_ts == NEVER else r_ts,
            max(0, min(days, elapsed)),
            flags[-1][0] if flags else "normal",
            flags,
            zone.tz,
        )
        return procedure


_new = object.__new__


def _kth(wd: array[int], b: int, ranges: list[tuple[int, int, int]], k: int) -> int:
    """Ordinal of the k-th counted day (k >= 1) after the day whose count is `b`."""
    idx = b + k - 1
    for lo, hi, _ in ranges:
        if lo > idx:
            break
        idx += hi - lo
    return wd[idx]
