"""Schedules: an open case's next changes as time passes, worked out when it is derived.

    moment(item, events, result, at)  what a plan needs of a case the clock derived
    evaluator(clock, item, events, limits)  derives it at any instant, for `plan`
    plan(first, evaluate, limit)      the steps after a case's next change -> JSON | None
    due_step(schedule, now, config)   the step in force at `now`, and the steps after it
    Moment                            what a plan needs of a case derived at an instant
    Step                              from `at`: the level, highest card and cards, until
                                      `next_change_at`

With no new events, time passing changes only four things about an open case:
its level, its highest card, its cards (one more each time a level is reached)
and its next change. So when the projector derives an open case from its
events, it also evaluates the clock at that next change, and at the one after
it, up to `MAX_STEPS` ahead, and keeps those results in the case's row
(`cases.schedule`). When the next change comes due, the level-advancing job
takes the last step due from the row instead of reading the case's events and
running the clock again: the cost of a due case no longer depends on its
events.

A step is the case derived at the instant of a change from the events it has
then (an event stamped ahead of the projector's clock counts from its instant
on, as it would). It is only planned while nothing else about the case
changes: the plan stops before a step at which any other derived column
(state, due dates, anomalies, ...) differs or a card already reached is not
the same, and where the calendar ends. A case whose steps have run out, that
has none (stored before schedules existed), whose schedule was planned under
another configuration (catalog or calendar: its fingerprint,
server.reconfigure), or that has events waiting in the projection queue, is
derived from its events as before, which plans its schedule afresh. The steps
are the clock's own results: applying one gives exactly the row and cards
that deriving the case at that instant gives (tests/server/test_schedules.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple

from casework.clock import CaseClock, Clock, Limits
from casework.errors import CalendarRangeError
from casework.events import CaseEvent

__all__ = ["MAX_STEPS", "TIMED", "Moment", "Step", "due_step", "evaluator", "moment", "plan"]

#: How many changes ahead a schedule holds (normal, warning, yellow, red is three).
MAX_STEPS: Final = 4

#: The derived columns a step sets; every other derived column stays as it is.
TIMED: Final = ("level", "card", "next_change_at")

#: Reads a schedule: `json.loads` less its wrappers' checks (a schedule is `plan`'s or
#: `due_step`'s JSON, nothing else), for a few microseconds a due case.
_decode: Final = json.JSONDecoder().raw_decode
#: Writes one: ``json.dumps(value, separators=(",", ":"))`` without making an encoder a call.
_encode: Final = json.JSONEncoder(separators=(",", ":")).encode


class Moment(NamedTuple):
    """A case as derived at one instant, as far as its schedule is concerned; instants as
    POSIX timestamps."""

    fixed: tuple[Any, ...]  # what the other derived columns follow from
    level: str
    card: str | None
    next_change: float | None
    cards: Mapping[str, float]  # level -> instant reached


class Step(NamedTuple):
    """From `at` on (until `next_change_at`, or for good when None): the case's level, its
    highest card and its cards, level -> instant reached."""

    at: datetime
    level: str
    card: str | None
    next_change_at: datetime | None
    cards: dict[str, datetime]


def plan(
    first: Moment,
    evaluate: Callable[[float], Moment | None],
    limit: int = MAX_STEPS,
    *,
    config: str = "",
) -> str | None:
    """The steps after `first` (the case as derived now), as the JSON its row keeps.

    `evaluate(at)` derives the case at instant `at` from the events it has then
    (None when it cannot: the calendar ends). Stops after `limit` steps and
    before a step that changes `first.fixed` or a card already reached. None
    when there is no step. `config` names the configuration planned under
    (see `due_step`). Instants are POSIX timestamps, as the clock keeps them:
    JSON gives back the same float, so the same microsecond.
    """
    steps: list[list[Any]] = []
    have = dict(first.cards)
    at = first.next_change
    while at is not None and len(steps) < limit:
        later = evaluate(at)
        if later is None or later.fixed != first.fixed:
            break
        cards = later.cards
        if any(cards.get(level) != reached for level, reached in have.items()):
            break
        new = [[level, reached] for level, reached in cards.items() if level not in have]
        steps.append([at, later.level, later.card, later.next_change, new])
        have.update(cards)
        at = later.next_change
    if not steps:
        return None
    base = [[level, reached] for level, reached in first.cards.items()]
    return _encode({"config": config, "cards": base, "steps": steps})


def due_step(
    schedule: str | None, now: datetime, config: str = ""
) -> tuple[Step, str | None] | None:
    """The last step of `schedule` that has begun at `now`, and the schedule left after it
    (None when no step is left); None when no step has begun, the schedule ran out, or it
    was planned under another configuration than `config` (the case must then be
    derived from its events)."""
    if not schedule:
        return None
    planned, _ = _decode(schedule)
    if planned["config"] != config:
        return None
    steps = planned["steps"]
    at_now = now.timestamp()
    taken = 0
    for planned_step in steps:
        if planned_step[0] > at_now:
            break
        taken += 1
    if not taken:
        return None
    at, level, card, following, _ = steps[taken - 1]
    if following is not None and following <= at_now and taken == len(steps):
        return None  # past the last planned step
    reached: dict[str, float] = dict(planned["cards"])
    for planned_step in steps[:taken]:
        reached.update(planned_step[4])
    # The instants made inline, no helper call each: this runs for every due case.
    cards = {lv: datetime.fromtimestamp(ts, UTC) for lv, ts in reached.items()}
    following_at = None if following is None else datetime.fromtimestamp(following, UTC)
    step = Step(datetime.fromtimestamp(at, UTC), level, card, following_at, cards)
    if taken == len(steps):
        return step, None
    left = {
        "config": config,
        "cards": [[lv, ts] for lv, ts in reached.items()],
        "steps": steps[taken:],
    }
    return step, _encode(left)


def moment(
    item: str, events: list[CaseEvent], result: CaseClock | CalendarRangeError, at: float
) -> Moment | None:
    """What a plan needs of the case of `events` as the clock derived it at `at` (`result`;
    the projector's row, in timestamps); None unless the case is open then."""
    if isinstance(result, CalendarRangeError) or result.state != "open":
        return None
    # With the clock's dates, these decide the derived columns time passing leaves alone.
    fixed = (item, result.state, result.outcome, result.timeliness, len(result.anomalies))
    following = result.next_change_ts
    pending = min((ts for e in events if (ts := e.at.timestamp()) > at), default=None)
    if pending is not None and (following is None or pending < following):
        following = pending
    cards = dict(result.card_times)
    return Moment((*fixed, *result.dates_key), result.level, result.card, following, cards)


def evaluator(
    clock: Clock, item: str, events: list[CaseEvent], limits: Limits
) -> Callable[[float], Moment | None]:
    """Derives the case of `events` at a given instant, for its schedule (`plan`)."""

    def derive(at: float) -> Moment | None:
        try:
            result = clock.evaluate(events, limits, datetime.fromtimestamp(at, UTC))
        except CalendarRangeError:
            return None
        return moment(item, events, result, at)

    return derive
