"""What goes wrong in real exports: contradictory records and malformed lines.

    add_faults(deployment, plans, rng, faults, horizon) -> list[Fault]

Each fault is one line to place in a drop folder's file, apart from the
planned cases, and says what esup does with it. None of them changes the
year's figures:

contradictory (lines that parse; esup keeps them and reports the contradiction)
    orphan_close           a completion of a case whose acceptance never came: an
                           extra case the server stores as ``invalid`` (counted in the
                           figures' `invalid`, in no other figure)
    close_before_accept    an extra case whose completion is stamped before its
                           acceptance, after the reference year: valid, the completion
                           ignored as an anomaly, so the case stays open
    conflicting_duplicate  a completion sent again under the same event_id with other
                           content, later the same day: the server answers `duplicate`
                           and keeps the first (the clock, too, keeps the earlier one)
    redelivered            an event exported again the next working day, unchanged:
                           `duplicate`, ignored
malformed (rejected, the lines beside them still go through)
    bad_json               a line cut short: casework.wire rejects it (malformed JSON)
    missing_field          an event without `at`, `case_id` or `type`: casework.wire
                           rejects it (``<field>: is required``)
    unknown_item           an acceptance naming an item the catalog lacks: parses, and
                           the server's ingest rejects it (``item: unknown item code``)
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from typing import Final

from casework.config import Deployment
from casework.errors import EventError
from casework.events import CaseEvent
from casework.wire import dumps_line, parse_json_line, to_wire
from esup.simulator import REFERENCE_YEAR, CasePlan, SimulationError

__all__ = ["CONTRADICTORY", "MALFORMED", "Fault", "Faults", "add_faults"]

CONTRADICTORY: Final = (
    "orphan_close",
    "close_before_accept",
    "conflicting_duplicate",
    "redelivered",
)
MALFORMED: Final = ("bad_json", "missing_field", "unknown_item")
_MISSING: Final = ("at", "case_id", "type")


@dataclass(frozen=True, slots=True)
class Faults:
    """How many faults of each kind a simulated year holds."""

    orphan_close: int = 3
    close_before_accept: int = 2
    conflicting_duplicate: int = 3
    redelivered: int = 3
    bad_json: int = 3
    missing_field: int = 3
    unknown_item: int = 3

    def __post_init__(self) -> None:
        for name in (*CONTRADICTORY, *MALFORMED):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise SimulationError(f"Faults.{name} must be a whole number >= 0, not {value!r}")

    @classmethod
    def none(cls) -> Faults:
        return cls(**dict.fromkeys((*CONTRADICTORY, *MALFORMED), 0))


@dataclass(frozen=True, slots=True)
class Fault:
    """One faulty line: where it goes (department and local day of the file), its text,
    and what esup does with it.

    `event` is the parsed event for lines that parse (contradictory ones and
    `unknown_item`); `rejected_by` is ``wire`` (casework.wire, on the agent or the
    server) or ``ingest`` (the server's checks) for malformed lines, with the
    `reason` esup gives.
    """

    kind: str
    department: str
    case_id: str
    day: date
    at: datetime
    text: str
    effect: str
    event: CaseEvent | None = None
    rejected_by: str | None = None
    reason: str | None = None
    extra: dict[str, object] = field(default_factory=dict)


class _Numbers:
    """Fresh case ids, continuing each department's numbering for the year."""

    def __init__(self, plans: list[CasePlan]) -> None:
        self.last: dict[tuple[str, int], int] = {}
        for plan in plans:
            key = (plan.department, int(plan.case_id.rsplit("-", 2)[1]))
            number = int(plan.case_id.rsplit("-", 1)[1])
            self.last[key] = max(self.last.get(key, 0), number)

    def next(self, department: str, year: int) -> str:
        key = (department, year)
        self.last[key] = self.last.get(key, 0) + 1
        return f"{department.upper()}-{year}-{self.last[key]:06d}"


def add_faults(
    deployment: Deployment,
    plans: list[CasePlan],
    histories: list[list[CaseEvent]],
    rng: random.Random,
    faults: Faults,
    working_days: list[date],
) -> list[Fault]:
    """The faults, in a fixed order. `histories` are the plans' events, plan by plan;
    `working_days` are the local working days events may
    fall on (the reference year and the next, up to the horizon), ascending."""
    if not plans:
        return []
    numbers = _Numbers(plans)
    zone = deployment.settings.zone
    in_year = [d for d in working_days if d.year == REFERENCE_YEAR]
    after_year = [d for d in working_days if d.year > REFERENCE_YEAR]
    out: list[Fault] = []

    def at(day: date, hour: int, minute: int) -> datetime:
        return datetime.combine(day, time(hour, minute, rng.randrange(60)), zone)

    def fresh(
        day: date, event_type: str = "accepted", model: CasePlan | None = None, **fields: object
    ) -> CaseEvent:
        model = model or rng.choice(plans)
        case_id = numbers.next(model.department, day.year)
        return CaseEvent(
            event_id=f"{case_id}-01",
            case_id=case_id,
            department=model.department,
            item=fields.pop("item", model.item),  # type: ignore[arg-type]
            type=event_type,  # type: ignore[arg-type]
            at=at(day, rng.randint(9, 16), rng.randrange(60)),
            **fields,  # type: ignore[arg-type]
        )

    for _ in range(faults.orphan_close):
        e = fresh(rng.choice(in_year), "completed", result="approved")
        e = replace(e, event_id=f"{e.case_id}-02")
        out.append(_good("orphan_close", e, "invalid case: completed, never accepted"))
    for _ in range(faults.close_before_accept):
        day = rng.choice(after_year[20:-20] or after_year)
        accepted = fresh(day)
        closed = replace(
            accepted,
            event_id=f"{accepted.case_id}-02",
            type="completed",
            at=accepted.at - timedelta(minutes=rng.randint(5, 40)),
            result="approved",
        )
        effect = "valid case accepted after the year, open: completion before acceptance ignored"
        out.append(_good("close_before_accept", closed, effect))
        out.append(_good("close_before_accept", accepted, effect))
    closes = [
        h[-1] for h in histories if h[-1].type == "completed" and h[-1].at.year == REFERENCE_YEAR
    ]
    for original in rng.sample(closes, min(faults.conflicting_duplicate, len(closes))):
        end_of_day = datetime.combine(original.at.date(), time(23, 59, 59), zone)
        later = min(original.at + timedelta(minutes=rng.randint(20, 90)), end_of_day)
        if later <= original.at:
            continue
        copy = replace(
            original, at=later, result="denied" if original.result != "denied" else "approved"
        )
        out.append(_good("conflicting_duplicate", copy, "duplicate: the first delivered is kept"))
    year_events = [e for h in histories for e in h if e.at.year == REFERENCE_YEAR]
    for original in rng.sample(year_events, min(faults.redelivered, len(year_events))):
        later_days = [d for d in working_days if d > original.at.date()]
        if not later_days:
            continue
        out.append(
            _good("redelivered", original, "duplicate: identical, ignored", day=later_days[0])
        )
    for _ in range(faults.bad_json):
        e = fresh(rng.choice(in_year))
        text = dumps_line(e)
        text = text[: len(text) * rng.randint(40, 80) // 100]
        out.append(_bad("bad_json", e, text, "wire"))
    for n in range(faults.missing_field):
        e = fresh(rng.choice(in_year))
        wire = to_wire(e)
        del wire[_MISSING[n % len(_MISSING)]]
        text = json.dumps(wire, ensure_ascii=False, separators=(",", ":"))
        out.append(_bad("missing_field", e, text, "wire"))
    for _ in range(faults.unknown_item):
        model = rng.choice(plans)
        item = f"{model.department}-999"
        while _known(deployment, item):
            item += "9"
        e = fresh(rng.choice(in_year), model=model, item=item)
        reason = f"item: unknown item code {e.item!r}"
        out.append(_bad("unknown_item", e, dumps_line(e), "ingest", reason=reason))
    return out


def _known(deployment: Deployment, code: str) -> bool:
    try:
        deployment.item(code)
    except LookupError:
        return False
    return True


def _good(kind: str, event: CaseEvent, effect: str, day: date | None = None) -> Fault:
    return Fault(
        kind=kind,
        department=event.department,
        case_id=event.case_id,
        day=day or event.at.date(),
        at=event.at,
        text=dumps_line(event),
        effect=effect,
        event=event,
    )


def _bad(
    kind: str, event: CaseEvent, text: str, rejected_by: str, *, reason: str | None = None
) -> Fault:
    if reason is None:
        try:
            parse_json_line(text)
        except EventError as exc:
            reason = exc.reason
        else:
            raise SimulationError(f"a {kind} line was meant to be malformed but parses: {text}")
    return Fault(
        kind=kind,
        department=event.department,
        case_id=event.case_id,
        day=event.at.date(),
        at=event.at,
        text=text,
        effect=f"rejected by {'casework.wire' if rejected_by == 'wire' else 'the server ingest'}",
        event=event if rejected_by == "ingest" else None,
        rejected_by=rejected_by,
        reason=reason,
    )
