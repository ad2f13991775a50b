"""The figures of docs/design.md counted from case events directly: the independent
count the server's figures (tests/server/test_figures.py) and the simulator's
summary (tests/esup/test_simulator.py) are both held to.

    independent_counts(deployment, events, start, end, now, dept=None) -> Counter

Acceptance, close and outcome come from the events themselves; timeliness and
cards from `Clock.evaluate` at `now`; the period is [start, end) in local dates.
The first event per (department, event_id) is kept, as the server keeps it.
Nothing here reads the server's tables or daily counts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import date, datetime, time

from casework.clock import Clock
from casework.config import Deployment
from casework.events import CaseEvent

CARD_COUNTS = (("warning", "warnings"), ("yellow", "yellow_cards"), ("red", "red_cards"))


def independent_counts(
    deployment: Deployment,
    events: Iterable[CaseEvent],
    start: date,
    end: date,
    now: datetime,
    dept: str | None = None,
) -> Counter[str]:
    """The period's counts for every case of `dept` (None: all) in `events`."""
    zone = deployment.settings.zone
    s, e = (datetime.combine(d, time(0), zone) for d in (start, end))
    clock = Clock.for_deployment(deployment)
    seen: set[tuple[str, str]] = set()
    cases: dict[tuple[str, str], list[CaseEvent]] = {}
    for event in events:
        if (event.department, event.event_id) in seen:
            continue
        seen.add((event.department, event.event_id))
        if dept is None or event.department == dept:
            cases.setdefault(event.case_key, []).append(event)
    n: Counter[str] = Counter()
    for history in cases.values():
        by_type = {event.type: event for event in history}
        if "accepted" not in by_type:
            n["invalid"] += 1
            continue
        accepted = by_type["accepted"].at
        close = by_type.get("completed") or by_type.get("withdrawn")
        closed = close.at if close else None
        n["received"] += s <= accepted < e
        n["carried_over"] += accepted < s and (closed is None or closed >= s)
        result = clock.evaluate(history, deployment.limits(history[0].item), now)
        if close is not None and s <= close.at < e:
            n["completed"] += 1
            if close.type == "withdrawn":
                n["withdrawn"] += 1
            else:
                timeliness = result.timeliness
                n["on_time" if timeliness == "immediate" else str(timeliness)] += 1
        open_at_end = accepted < e and (closed is None or closed >= e)
        n["open_at_end"] += open_at_end
        cards = {card.level: card.at for card in result.cards}
        if open_at_end and any(cards.get(lv, e) < e for lv in ("yellow", "red")):
            n["overdue_at_end"] += 1
        for level, name in CARD_COUNTS:
            n[name] += level in cards and s <= cards[level] < e
    return n
