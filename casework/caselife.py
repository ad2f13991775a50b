"""Reading a case's life from its events: order, duplicates, contradictions.

The clock asks two questions of a case's events known at an instant: is this
a simple case whose events can be read in any order (`simple_life`), and
otherwise what do they say in canonical order -- the acceptance, the close,
the special procedures, the extensions, and the anomalies met on the way.
"""

from __future__ import annotations

from collections.abc import Sequence

from casework.casestate import NEVER, Anomaly
from casework.events import TYPE_RANK, CaseEvent

Life = tuple[
    CaseEvent | None,
    float,
    str | None,
    CaseEvent | None,
    Sequence[tuple[float, float, CaseEvent]],
    Sequence[tuple[float, int]],
    Sequence[Anomaly],
]


def simple_life(events: list[CaseEvent], now: float) -> Life | None:
    """The life of a case that holds no contradiction, read in one pass.

    That is: the events known at `now` are one acceptance, perhaps one close,
    and between them steps, extensions and special procedures that alternate
    suspended / resumed; an event delivered twice counts once. Only the few
    procedure and extension events are sorted. Anything else -- an anomaly to
    report, two different events under one event_id -- returns None, and
    `walk_life` reads the case in canonical order.
    """
    accepted = close = None
    exts: list[tuple[float, str, int]] | None = None
    procs: list[tuple[float, int, str, CaseEvent]] | None = None
    first, last = NEVER, -NEVER  # the earliest and latest event between the two ends
    seen: dict[str, CaseEvent] = {}
    for e in events:
        prior = seen.get(e.event_id)
        if prior is not None:
            if prior == e:
                continue  # the same event delivered twice
            return None  # two different events under one event_id
        seen[e.event_id] = e
        ts = e.ts
        if ts > now:
            continue
        kind = e.type
        if kind == "step":  # the commonest kind first
            pass
        elif kind == "accepted":
            if accepted is not None:
                return None
            accepted = e
            continue
        elif kind == "completed" or kind == "withdrawn":
            if close is not None:
                return None
            close = e
            continue
        elif kind == "extended":
            if exts is None:
                exts = []
            exts.append((ts, e.event_id, e.days or 0))
        else:  # suspended or resumed
            if procs is None:
                procs = []
            procs.append((ts, TYPE_RANK[kind], e.event_id, e))
        if ts < first:
            first = ts
        if ts > last:
            last = ts
    if accepted is None:
        return None
    start = accepted.ts
    end = NEVER if close is None else close.ts
    if end < start or first < start or last > end:
        return None  # something before the acceptance or after the close
    susps: Sequence[tuple[float, float, CaseEvent]] = ()
    open_susp = None
    if procs is not None:
        procs.sort()  # event_ids are unique, so the events are never compared
        pairs = []
        for ts, _, _, e in procs:
            if e.type == "suspended":
                if open_susp is not None:
                    return None
                open_susp = e
            else:
                if open_susp is None:
                    return None
                pairs.append((open_susp.ts, ts, open_susp))
                open_susp = None
        if open_susp is not None:  # still open; a close ends it
            pairs.append((open_susp.ts, end, open_susp))
        susps = pairs
    outcome = None if close is None else close.type
    if exts is None:
        return (accepted, end, outcome, open_susp, susps, (), ())
    exts.sort()
    return (accepted, end, outcome, open_susp, susps, [(t, d) for t, _, d in exts], ())


def walk_life(events: list[CaseEvent], now: float) -> Life:
    """Walk the case's events known at `now` in canonical order.

    Returns the acceptance (None if there is none), the close instant and
    outcome, the suspension still open, the suspensions (start, end or inf,
    event), the extensions (instant, days) and the anomalies met.
    """
    anomalies: list[Anomaly] = []
    timeline = ordered_events(events, now, anomalies)
    if not timeline:
        return (None, NEVER, None, None, [], [], anomalies)
    close_ts = NEVER
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


def ordered_events(
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
