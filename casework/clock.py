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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from typing import TYPE_CHECKING, Final, NamedTuple
from zoneinfo import ZoneInfo

from casework.calendar import WorkCalendar
from casework.errors import CalendarRangeError
from casework.events import TYPE_RANK, CaseEvent

if TYPE_CHECKING:
    from casework.config import Deployment

#: Levels of an open case, lowest first (`suspended` stands apart).
LEVELS: Final[tuple[str, ...]] = ("normal", "warning", "yellow", "red")
CARD_LEVELS: Final[tuple[str, ...]] = ("warning", "yellow", "red")
#: How a completed case closed.
TIMELINESS: Final[tuple[str, ...]] = ("immediate", "early", "on_time", "late")

_EPOCH_ORDINAL: Final[int] = date(1970, 1, 1).toordinal()
_DAY: Final[int] = 86400
_NEVER: Final[float] = float("inf")


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


class _Zone:
    """Local dates and midnights of one time zone, as plain functions for the hot path.

    A zone whose UTC offset never changes inside the calendar's window (such as
    Asia/Shanghai since 1991) gets pure arithmetic; any other goes through zoneinfo.
    """

    def __init__(self, tz: tzinfo, calendar: WorkCalendar) -> None:
        self.tz = tz
        offsets = {
            tz.utcoffset(datetime(y, m, 1))
            for y in range(calendar.first_day.year, calendar.last_day.year + 1)
            for m in (1, 4, 7, 10)
        }
        self.day: Callable[[float], int]
        self.midnight: Callable[[int], float]
        if len(offsets) == 1 and (offset := offsets.pop()) is not None:
            off = int(offset.total_seconds())

            def day(ts: float) -> int:
                return int((ts + off) // _DAY) + _EPOCH_ORDINAL

            def midnight(ordinal: int) -> float:
                return float((ordinal - _EPOCH_ORDINAL) * _DAY - off)

            self.day, self.midnight = day, midnight
        else:
            self.day = lambda ts: datetime.fromtimestamp(ts, tz).date().toordinal()
            self.midnight = lambda ordinal: datetime.combine(
                date.fromordinal(ordinal), datetime.min.time(), tz
            ).timestamp()
        #: midnights[i]: the instant local day `base + i` begins, for every day of the
        #: calendar's window and the one after it (a deadline is the next midnight).
        self.base = calendar.base
        span = calendar.last_day.toordinal() - calendar.base + 2
        self.midnights = array("d", (self.midnight(self.base + i) for i in range(span)))

    def instant(self, ts: float) -> datetime:
        return datetime.fromtimestamp(ts, self.tz)


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
    suspensions: tuple[Suspension, ...] = ()
    uncovered_years: tuple[int, ...] = ()
    anomalies: tuple[Anomaly, ...] = ()
    _accepted: float = _NEVER
    _closed: float = _NEVER
    _promised_due: int = 0
    _legal_due: int = 0
    _next: float = _NEVER
    _cards: tuple[tuple[str, float], ...] = ()
    _extensions: tuple[tuple[float, int], ...] = ()
    _ranges: tuple[tuple[int, int, int], ...] = ()

    def __init__(self, zone: _Zone, at: datetime) -> None:
        self._zone = zone
        self.at = at

    @property
    def accepted_at(self) -> datetime | None:
        return None if self._accepted == _NEVER else self._zone.instant(self._accepted)

    @property
    def closed_at(self) -> datetime | None:
        return None if self._closed == _NEVER else self._zone.instant(self._closed)

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
        return None if self._next == _NEVER else self._zone.instant(self._next)

    @property
    def next_change_ts(self) -> float | None:
        """`next_change` as a POSIX timestamp, for schedulers."""
        return None if self._next == _NEVER else self._next


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
        self._zone = _Zone(self.tz, calendar)

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
            cal = self.calendar
            raise CalendarRangeError("a due date", cal.first_day, cal.last_day) from exc

    def evaluate_many(
        self, cases: Iterable[tuple[list[CaseEvent], Limits]], at: datetime
    ) -> Iterator[CaseClock]:
        """`evaluate` for many cases at one instant (a scheduler's sweep, a recompute)."""
        now = at.timestamp()
        evaluate = self._evaluate
        try:
            for events, limits in cases:
                yield evaluate(events, limits, at, now)
        except IndexError as exc:
            cal = self.calendar
            raise CalendarRangeError("a due date", cal.first_day, cal.last_day) from exc

    def _evaluate(
        self, events: list[CaseEvent], limits: Limits, at: datetime, now: float
    ) -> CaseClock:
        # Written for speed (the server re-evaluates every open case, the benchmark
        # a million): local variables, array look-ups, no per-day loops.
        zone = self._zone
        cal = self.calendar
        result = CaseClock(zone, at)

        # 1-2. The case's life as known at `now`: most cases are an acceptance and
        #      perhaps its close, read directly; anything else is walked in order.
        plain = _plain(events, now)
        if plain is not None:
            accepted, close_ts, outcome = plain
            acc_ts = accepted.ts
            open_susp = None
            susps: list[tuple[float, float, CaseEvent]] = []
            exts: list[tuple[float, int]] = []
            anomalies: list[Anomaly] = []
        else:
            walked, close_ts, outcome, open_susp, susps, exts, anomalies = _walk(events, now)
            if walked is None:
                if not anomalies:
                    anomalies.append(Anomaly("", f"no event at or before {at.isoformat()}"))
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
            anomalies.append(
                Anomaly(accepted.event_id, f"legal limit {legal} < promised {promised}; using it")
            )
            legal = promised
        day = zone.day
        mids = zone.midnights
        cum = cal.cum
        wd = cal.workday_ordinals
        base = cal.base
        day_a = day(acc_ts)
        if day_a < base:
            raise CalendarRangeError(date.fromordinal(day_a), cal.first_day, cal.last_day)
        b = cum[day_a - base]  # index of the first working day after A

        # 4. Working-day index ranges [lo, hi) the suspensions exclude, in order.
        ranges: list[tuple[int, int, int]] = []
        firsts: list[int] = []
        for n, (s_ts, r_ts, e) in enumerate(susps) if susps else ():
            lo = cum[day(s_ts) - base]
            firsts.append(lo)
            cap = e.days or 0
            if r_ts != _NEVER:
                cap = min(cap, cum[day(r_ts) - base] - lo)
            if cap > 0:
                ranges.append((lo, lo + cap, n))

        warn = limits.warn_days

        # 5. Cards, segment by segment: only extensions move the thresholds in time.
        cards: list[tuple[str, float]] = []
        n_p, n_l = promised, legal
        due_p, due_l, warning, yellow, red = _thresholds(
            wd, b, ranges, day_a, acc_ts, mids, base, warn, n_p, n_l
        )
        if not exts:
            # A card needs the case open at its instant, and the instant reached.
            if warning < close_ts and warning <= now:
                cards.append(("warning", warning))
                if yellow < close_ts and yellow <= now:
                    cards.append(("yellow", yellow))
                    if red < close_ts and red <= now:
                        cards.append(("red", red))
        else:
            bounds = [acc_ts] + [ts for ts, _ in exts] + [_NEVER]
            reached = 0
            for j in range(len(exts) + 1):
                if j:
                    n_p += exts[j - 1][1]
                    n_l += exts[j - 1][1]
                    due_p, due_l, warning, yellow, red = _thresholds(
                        wd, b, ranges, day_a, acc_ts, mids, base, warn, n_p, n_l
                    )
                seg_start, seg_end = bounds[j], bounds[j + 1]
                th = (warning, yellow, red)
                while reached < 3:
                    t = th[reached] if th[reached] > seg_start else seg_start
                    if t < seg_end and t < close_ts and t <= now:
                        cards.append((CARD_LEVELS[reached], t))
                        reached += 1
                    else:
                        break
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

        # 6. Special procedures and their own levels.
        procedures = (
            [
                self._suspension(s_ts, r_ts, e, first, now, close_ts)
                for (s_ts, r_ts, e), first in zip(susps, firsts, strict=True)
            ]
            if susps
            else ()
        )
        if procedures:
            result.suspensions = tuple(p for p, _ in procedures)
            result._ranges = tuple(ranges)

        # 7. Where the case stands at `at`. Counted days through a date D are the
        #    working days in (A, D] less those the procedures took.
        day_end = day(close_ts if outcome is not None else now)
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
            if now < warning:
                nxt = warning
            elif now < yellow:
                nxt = yellow
            elif now < red:
                nxt = red
            else:
                nxt = _NEVER
            for p, p_th in procedures:
                if p.is_open:
                    for t in p_th:
                        if now < t < nxt:
                            nxt = t
            result._next = nxt

        # 8. Whether any date that mattered lies in a year the calendar does not know.
        gaps = cal.gaps
        last = due_l if due_l > day_end else day_end
        if gaps[last - base + 1] != gaps[day_a - base]:
            result.uncovered_years = cal.uncovered_years_ordinal(day_a, last)
        if anomalies:
            result.anomalies = tuple(anomalies)
        return result

    def _suspension(
        self, s_ts: float, r_ts: float, e: CaseEvent, first: int, now: float, close_ts: float
    ) -> tuple[Suspension, tuple[float, float, float]]:
        """The procedure as of `now`, and the instants of its warning, yellow and red.

        `first` is the window index of the first working day after it started.
        """
        zone = self._zone
        mids = zone.midnights
        cal = self.calendar
        wd = cal.workday_ordinals
        base = cal.base
        days = e.days or 0
        if days:
            k = days - self.procedure_warn_days
            th = (
                mids[wd[first + k - 1] - base] if k > 0 else s_ts,
                mids[wd[first + days - 1] + 1 - base],
                mids[wd[first + days] + 1 - base],
            )
        else:
            th = (_NEVER, _NEVER, _NEVER)
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
            None if r_ts == _NEVER else r_ts,
            max(0, min(days, elapsed)),
            flags[-1][0] if flags else "normal",
            flags,
            zone.tz,
        )
        return procedure, th


_Life = tuple[
    CaseEvent | None,
    float,
    str | None,
    CaseEvent | None,
    list[tuple[float, float, CaseEvent]],
    list[tuple[float, int]],
    list[Anomaly],
]


def _plain(events: list[CaseEvent], now: float) -> tuple[CaseEvent, float, str | None] | None:
    """(acceptance, close instant, outcome) of a case whose known events are one
    acceptance, workflow steps between it and its close, and perhaps the close,
    with unique event ids; None for anything else, which `_walk` then reads."""
    accepted = close = None
    for e in events:
        kind = e.type
        if kind == "step" or e.ts > now:
            continue
        if kind == "accepted" and accepted is None:
            accepted = e
        elif (kind == "completed" or kind == "withdrawn") and close is None:
            close = e
        else:
            return None
    if accepted is None:
        return None
    start = accepted.ts
    end = _NEVER if close is None else close.ts
    if end < start:
        return None
    if len(events) > 2:
        for e in events:
            if e.type == "step" and (e.ts < start or end < e.ts <= now):
                return None
    if len(events) > 1 and len({e.event_id for e in events}) != len(events):
        return None
    return (accepted, end, None if close is None else close.type)


def _walk(events: list[CaseEvent], now: float) -> _Life:
    """Walk the case's events known at `now` in canonical order.

    Returns the acceptance (None if there is none), the close instant and
    outcome, the suspension still open, the suspensions (start, end or inf,
    event), the extensions (instant, days) and the anomalies met.
    """
    anomalies: list[Anomaly] = []
    timeline = _timeline(events, now, anomalies)
    if not timeline:
        return (None, _NEVER, None, None, [], [], anomalies)
    close_ts = _NEVER
    accepted: CaseEvent | None = None
    outcome: str | None = None
    open_susp: CaseEvent | None = None
    susps: list[tuple[float, float, CaseEvent]] = []  # (start ts, resume ts or inf, event)
    exts: list[tuple[float, int]] = []
    for ts, _, event_id, e in timeline:
        kind = e.type
        if accepted is None:
            if kind == "accepted":
                accepted = e
            else:
                anomalies.append(Anomaly(event_id, f"{kind} before the case was accepted"))
        elif outcome is not None:
            anomalies.append(Anomaly(event_id, f"{kind} after the case was {outcome}"))
        elif kind == "completed" or kind == "withdrawn":
            close_ts, outcome = ts, kind
        elif kind == "suspended":
            if open_susp is not None:
                anomalies.append(Anomaly(event_id, "suspended while already suspended"))
            else:
                open_susp = e
        elif kind == "resumed":
            if open_susp is None:
                anomalies.append(Anomaly(event_id, "resumed without an open suspension"))
            else:
                susps.append((open_susp.ts, ts, open_susp))
                open_susp = None
        elif kind == "extended":
            exts.append((ts, e.days or 0))
        elif kind == "accepted":
            anomalies.append(Anomaly(event_id, "accepted again; the first acceptance counts"))
    if accepted is not None and open_susp is not None:
        # A case closed during a special procedure ends the procedure with it.
        susps.append((open_susp.ts, close_ts, open_susp))
    return (accepted, close_ts, outcome, open_susp, susps, exts, anomalies)


def _thresholds(
    wd: array[int],
    b: int,
    ranges: list[tuple[int, int, int]],
    day_a: int,
    acc_ts: float,
    mids: array[float],
    base: int,
    warn: int,
    n_p: int,
    n_l: int,
) -> tuple[int, int, float, float, float]:
    """Due dates, and the instants of warning, yellow and red, for limits of n_p and n_l."""
    if ranges:
        due_p = _kth(wd, b, ranges, n_p) if n_p > 0 else day_a
        due_l = _kth(wd, b, ranges, n_l) if n_l > 0 else day_a
    else:
        due_p = wd[b + n_p - 1] if n_p > 0 else day_a
        due_l = wd[b + n_l - 1] if n_l > 0 else day_a
    red = mids[due_l + 1 - base]
    yellow = mids[due_p + 1 - base]
    if yellow > red:
        yellow = red
    k = n_p - warn  # warning from acceptance when the whole limit is within the window
    warning = mids[_kth(wd, b, ranges, k) - base] if k > 0 else acc_ts
    return (due_p, due_l, warning if warning < yellow else yellow, yellow, red)


def _kth(wd: array[int], b: int, ranges: list[tuple[int, int, int]], k: int) -> int:
    """Ordinal of the k-th counted day (k >= 1) after the day whose count is `b`."""
    idx = b + k - 1
    for lo, hi, _ in ranges:
        if lo > idx:
            break
        idx += hi - lo
    return wd[idx]


def _timeline(
    events: list[CaseEvent], now: float, anomalies: list[Anomaly]
) -> list[tuple[float, int, str, CaseEvent]]:
    """The events known at `now`, one per event_id, in canonical order.

    Canonical order: instant, then type (wire table order), then event_id. Of
    two different events under one event_id the first in canonical order wins,
    whatever order they arrived in, and the conflict is reported.
    """
    rank = TYPE_RANK
    timeline = [(e.ts, rank[e.type], e.event_id, e) for e in events if e.ts <= now]
    if len({entry[2] for entry in timeline}) != len(timeline):
        seen: dict[str, tuple[float, int, str, CaseEvent]] = {}
        conflicts: set[str] = set()
        for entry in timeline:
            prior = seen.get(entry[2])
            if prior is None:
                seen[entry[2]] = entry
            elif prior[3] != entry[3]:
                conflicts.add(entry[2])
                if (entry[0], entry[1], repr(entry[3])) < (prior[0], prior[1], repr(prior[3])):
                    seen[entry[2]] = entry
        timeline = list(seen.values())
        anomalies.extend(
            Anomaly(event_id, "same event_id with different content; kept one")
            for event_id in sorted(conflicts)
        )
    timeline.sort()  # event_ids are unique now, so the events themselves are never compared
    return timeline
