"""A simulated year, whole: cases, faults, drop-folder files and what esup should make of it.

    simulate(deployment, seed=1, shape=REFERENCE_SHAPE, faults=Faults(), group_size=8)
        -> Simulation
    Simulation.write(out, progress=None) -> writes every file, then summary.json

This is the module tests, benchmarks and the demo use; the pieces are
`esup.simulator` (the cases), `esup.simfaults` (faulty lines),
`esup.simfigures` (the expected figures) and `esup.dropfolders` (the files).
The summary (`Simulation.summary()`, format ``esup.simulation/1``, also written
as ``summary.json`` beside the folders) says what was written and what esup
must make of it: events, files and lines per folder; the cases; the year's
figures city-wide and per department; every malformed line with the reason it
is rejected; every contradictory record with what esup does with it; and the
ingest answers to expect (accepted, duplicate, rejected).
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, Final

from casework.calendar import WorkCalendar
from casework.config import Deployment
from casework.events import CaseEvent
from esup.dropfolders import DropFile, WrittenFile, department_groups, lay_out, write_files
from esup.simfaults import MALFORMED, Fault, Faults, add_faults
from esup.simfigures import YearFigures, count_figures
from esup.simulator import (
    HORIZON,
    REFERENCE_SHAPE,
    REFERENCE_YEAR,
    CasePlan,
    SimulationError,
    YearShape,
    plan_cases,
)

__all__ = ["FORMAT", "SUMMARY_FILE", "Simulation", "ensure_empty", "simulate"]

FORMAT: Final = "esup.simulation/1"
SUMMARY_FILE: Final = "summary.json"


@dataclass(frozen=True, slots=True)
class Simulation:
    """One simulated year: its inputs, events, faults, files and expected figures.

    `events` are the planned cases' events in delivery order (every event
    once); `faults` the extra lines; `files` everything to write, in time order.
    `figures` are counted at `now` from everything esup stores: the events, then
    the faults that parse and pass ingest (a conflicting duplicate comes after the
    event it repeats, in the files as here, so the first delivered is the original).
    """

    seed: int
    shape: YearShape
    year: int
    now: datetime
    groups: dict[str, tuple[str, ...]]
    plans: tuple[CasePlan, ...]
    events: tuple[CaseEvent, ...]
    faults: tuple[Fault, ...]
    files: tuple[DropFile, ...]
    figures: YearFigures

    def summary(self) -> dict[str, Any]:
        """The ``esup.simulation/1`` document (see the module docstring)."""
        folders: dict[str, dict[str, Any]] = {
            name: {
                "departments": list(codes),
                "style": "",
                "files": 0,
                "lines": 0,
                "events": 0,
                "malformed": 0,
                "contradictory": 0,
            }
            for name, codes in self.groups.items()
        }
        malformed: list[dict[str, Any]] = []
        contradictory: list[dict[str, Any]] = []
        for drop in self.files:
            entry = folders[drop.folder]
            entry["style"] = drop.style
            entry["files"] += 1
            entry["lines"] += len(drop.lines)
            entry["events"] += drop.events
            for p in drop.placed:
                f = p.fault
                where = {"folder": p.folder, "file": p.file, "line": p.line, "kind": f.kind}
                what = {"department": f.department, "case_id": f.case_id}
                if f.kind in MALFORMED:
                    entry["malformed"] += 1
                    malformed.append({**where, **what, "rejected_by": f.rejected_by,
                                      "reason": f.reason})  # fmt: skip
                else:
                    entry["contradictory"] += 1
                    event_id = f.event.event_id if f.event else None
                    contradictory.append({**where, **what, "event_id": event_id,
                                          "effect": f.effect})  # fmt: skip
        duplicates = sum(
            1 for f in self.faults if f.kind in ("conflicting_duplicate", "redelivered")
        )
        rejected = sum(1 for f in self.faults if f.kind in MALFORMED)
        lines = sum(len(d.lines) for d in self.files)
        valid = len(self.plans) + sum(
            1
            for f in self.faults
            if f.kind == "close_before_accept" and f.event and f.event.type == "accepted"
        )
        return {
            "format": FORMAT,
            "seed": self.seed,
            "year": self.year,
            "now": self.now.isoformat(),
            "shape": {
                "received": self.shape.received,
                "carried_over": self.shape.carried_over,
                "completed": self.shape.completed,
                "open_at_end": self.shape.open_at_end,
            },
            "folders": folders,
            "files": len(self.files),
            "lines": lines,
            "cases": {
                "valid": valid,
                "invalid": self.figures.total["invalid"],
                "planned": len(self.plans),
            },
            "ingest": {
                "accepted": lines - duplicates - rejected,
                "duplicate": duplicates,
                "rejected": rejected,
            },
            "figures": self.figures.to_json(),
            "malformed": malformed,
            "contradictory": contradictory,
        }

    def write(
        self, out: Path, progress: Callable[[WrittenFile], None] | None = None
    ) -> dict[str, Any]:
        """Write every file under `out`, then `summary.json` there (temp name and rename);
        returns the summary. `out` must be empty or not exist yet: an append writer would
        otherwise add a second copy to the files of an earlier run."""
        ensure_empty(out)
        out.mkdir(parents=True, exist_ok=True)
        for written in write_files(self.files, out):
            if progress is not None:
                progress(written)
        summary = self.summary()
        temp = out / f".{SUMMARY_FILE}.tmp"
        temp.write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n", "utf-8")
        os.replace(temp, out / SUMMARY_FILE)
        return summary


def ensure_empty(out: Path) -> None:
    """Raise `SimulationError` unless `out` is an empty directory or does not exist."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SimulationError(
            f"{out} is not an empty directory; write a simulated year into a new or "
            "empty one (append-style folders would add to the files already there)"
        )


def simulate(
    deployment: Deployment,
    *,
    seed: int = 1,
    shape: YearShape = REFERENCE_SHAPE,
    faults: Faults | None = None,
    group_size: int = 8,
) -> Simulation:
    """Simulate the reference year for `deployment` (see the module docstring)."""
    rng = random.Random(seed)
    year = REFERENCE_YEAR
    plans = plan_cases(deployment, rng, shape, year)
    zone = deployment.settings.zone
    cal_days = _working_days(deployment, date(year, 1, 1), HORIZON)
    histories = [plan.events() for plan in plans]
    extra = add_faults(deployment, plans, histories, rng, faults or Faults(), cal_days)
    groups = department_groups(deployment, group_size)
    events = [e for history in histories for e in history]
    files = lay_out(groups, events, extra)
    now = datetime.combine(HORIZON, time(0), zone)
    accepted = events + [f.event for f in extra if f.event is not None and f.rejected_by is None]
    figures = count_figures(deployment, accepted, date(year, 1, 1), date(year + 1, 1, 1), now)
    return Simulation(
        seed=seed,
        shape=shape,
        year=year,
        now=now,
        groups=groups,
        plans=tuple(plans),
        events=tuple(events),
        faults=tuple(extra),
        files=tuple(files),
        figures=figures,
    )


def _working_days(deployment: Deployment, first: date, end: date) -> list[date]:
    """The working days in [first, end), by the deployment's calendar."""
    calendar = WorkCalendar.from_config(deployment.calendar)
    lo = calendar.count_ordinal(first.toordinal() - 1)
    hi = calendar.count_ordinal(end.toordinal() - 1)
    return [date.fromordinal(o) for o in calendar.workday_ordinals[lo:hi]]
