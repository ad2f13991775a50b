"""The figures a simulated year should show, counted by esup's definitions.

    count_figures(deployment, events, start, end, now) -> YearFigures

The definitions are docs/design.md's ("Figures"), as the server applies them:
a case is (department, case_id); of events sharing (department, event_id)
the first one delivered counts (the server answers the others `duplicate`);
each case is evaluated by `casework.clock.Clock` at `now`, and a case with
no acceptance is `invalid`, counted apart whatever the period. A period is
[start, end) in local dates of the deployment's zone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Final

from casework.clock import Clock
from casework.config import Deployment
from casework.events import CaseEvent

__all__ = ["COUNTS", "YearFigures", "count_figures"]

#: The counts of a period, in the order of docs/design.md (and of the server's `Figures`).
COUNTS: Final[tuple[str, ...]] = (
    "received",
    "carried_over",
    "completed",
    "withdrawn",
    "early",
    "on_time",
    "late",
    "open_at_end",
    "overdue_at_end",
    "warnings",
    "yellow_cards",
    "red_cards",
    "invalid",
)
_CARD_COUNTS: Final = (("warning", "warnings"), ("yellow", "yellow_cards"), ("red", "red_cards"))


@dataclass(frozen=True, slots=True)
class YearFigures:
    """A period's counts city-wide (`total`) and per department (departments with a case)."""

    start: date
    end: date
    total: dict[str, int]
    departments: dict[str, dict[str, int]]

    @staticmethod
    def rates(counts: dict[str, int]) -> dict[str, dict[str, float | int | None]]:
        """completion_rate and on_time_rate as {value, numerator, denominator}."""
        done = counts["completed"]
        due = counts["received"] + counts["carried_over"]
        timely = counts["early"] + counts["on_time"]
        judged = counts["completed"] - counts["withdrawn"]
        return {
            "completion_rate": _rate(done, due),
            "on_time_rate": _rate(timely, judged),
        }

    def to_json(self) -> dict[str, object]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "all": {**self.total, **self.rates(self.total)},
            "departments": {
                code: {**counts, **self.rates(counts)} for code, counts in self.departments.items()
            },
        }


def _rate(numerator: int, denominator: int) -> dict[str, float | int | None]:
    value = numerator / denominator if denominator else None
    return {"value": value, "numerator": numerator, "denominator": denominator}


def _item_of(events: list[CaseEvent]) -> str:
    """The case's item as the server takes it: its earliest acceptance's, else its earliest
    event's."""
    accepted = [e for e in events if e.type == "accepted"]
    return min(accepted or events, key=lambda e: (e.ts, e.event_id)).item


def count_figures(
    deployment: Deployment, events: Iterable[CaseEvent], start: date, end: date, now: datetime
) -> YearFigures:
    """Count the period's figures from `events` (in delivery order), every case evaluated
    at `now` (aware). Every event must name a known item."""
    clock = Clock.for_deployment(deployment)
    zone = deployment.settings.zone
    s = datetime.combine(start, time(0), zone)
    e = datetime.combine(end, time(0), zone)
    seen: set[tuple[str, str]] = set()
    cases: dict[tuple[str, str], list[CaseEvent]] = {}
    for event in events:
        key = (event.department, event.event_id)
        if key not in seen:
            seen.add(key)
            cases.setdefault(event.case_key, []).append(event)
    total = dict.fromkeys(COUNTS, 0)
    by_department: dict[str, dict[str, int]] = {}
    for (department, _), history in cases.items():
        n = by_department.setdefault(department, dict.fromkeys(COUNTS, 0))
        result = clock.evaluate(history, deployment.limits(_item_of(history)), now)
        accepted = result.accepted_at
        if result.state == "invalid" or accepted is None:
            n["invalid"] += 1
            continue
        closed = result.closed_at
        n["received"] += s <= accepted < e
        n["carried_over"] += accepted < s and (closed is None or closed >= s)
        if closed is not None and s <= closed < e:
            n["completed"] += 1
            if result.outcome == "withdrawn":
                n["withdrawn"] += 1
            else:
                timeliness = result.timeliness or ""
                n["on_time" if timeliness == "immediate" else timeliness] += 1
        open_at_end = accepted < e and (closed is None or closed >= e)
        n["open_at_end"] += open_at_end
        cards = {card.level: card.at for card in result.cards}
        if open_at_end and any(cards.get(level, e) < e for level in ("yellow", "red")):
            n["overdue_at_end"] += 1
        for level, name in _CARD_COUNTS:
            n[name] += level in cards and s <= cards[level] < e
    for counts in by_department.values():
        for name in COUNTS:
            total[name] += counts[name]
    return YearFigures(start, end, total, dict(sorted(by_department.items())))
