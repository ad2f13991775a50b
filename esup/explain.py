"""`esup explain`: how one case's clock was computed, day by day.

A supervisor asks "why is this case red?"; a department prepares an appeal.
Reads the case's events as JSON Lines (a file or stdin), evaluates the clock at
an instant (default now) with the deployment's catalog and calendar, and prints
the acceptance, the limits, every day counted or excluded and why, the due
dates, the level and when each card was reached.

`--json` prints the document `explanation()` builds, format ``esup.explain/1``
(documented in docs/explain.md): dates are local `YYYY-MM-DD`, instants
RFC 3339 with the deployment's UTC offset.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from itertools import groupby
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.table import Table

from casework.batches import iter_json_lines
from casework.calendar import WorkCalendar
from casework.clock import CaseClock, Clock, Limits
from casework.config import Deployment, UnknownCodeError
from casework.configfiles import load_config
from casework.errors import ConfigErrors, EsupError, EventError
from casework.events import CaseEvent

FORMAT = "esup.explain/1"


class InputError(EsupError, ValueError):
    """The events given to `esup explain` cannot be explained as one case."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "explain",
        help="show how one case's clock was computed",
        description="Read one case's events (JSON Lines) and show how its clock was computed: "
        "limits, counted and excluded days, due dates, level and cards.",
    )
    p.add_argument("file", nargs="?", default="-", help="events file (JSON Lines); - for stdin")
    p.add_argument("--config", type=Path, default=Path("config"), help="configuration directory")
    p.add_argument("--at", help="instant to evaluate at, RFC 3339 with offset (default: now)")
    p.add_argument("--json", action="store_true", help="print the esup.explain/1 JSON document")
    p.set_defaults(func=run)


def run(
    args: argparse.Namespace,
    *,
    stdin: IO[str] | None = None,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> int:
    """The command; 0 on success, 2 on bad input or configuration (each problem printed)."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        deployment = load_config(args.config)
        at = parse_instant(args.at) if args.at else now()
        if args.file == "-":
            events = read_events(stdin or sys.stdin, "<stdin>")
        else:
            with open(args.file, encoding="utf-8") as fh:
                events = read_events(fh, args.file)
        limits = limits_for(deployment, events)
    except (ConfigErrors, InputError, OSError) as exc:
        print(f"esup explain: {exc}", file=err)
        return 2
    clock = Clock.for_deployment(deployment)
    result = clock.evaluate(events, limits, at)
    doc = explanation(events, result, limits, clock.calendar, deployment)
    if args.json:
        json.dump(doc, out, ensure_ascii=False, indent=2)
        out.write("\n")
    else:
        render(doc, Console(file=out, highlight=False, soft_wrap=True))
    return 0


def parse_instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InputError(
            f"--at {text!r} is not an RFC 3339 timestamp; write e.g. 2018-10-22T09:00:00+08:00."
        ) from exc
    if value.tzinfo is None:
        raise InputError(f"--at {text!r} has no UTC offset; write e.g. {text}+08:00.")
    return value


def read_events(lines: Iterable[str], source: str) -> list[CaseEvent]:
    """Every event of one case; every bad line is reported at once."""
    events: list[CaseEvent] = []
    problems: list[str] = []
    for _, parsed in iter_json_lines(lines, source=source):
        if isinstance(parsed, EventError):
            problems.append(str(parsed))
        else:
            events.append(parsed)
    if problems:
        raise InputError("\n".join(problems))
    if not events:
        raise InputError(f"{source}: no events; give one case's events as JSON Lines.")
    first = events[0]
    for n, e in enumerate(events, start=1):
        if e.case_key != first.case_key:
            raise InputError(
                f"{source}: event {n} ({e.event_id!r}) belongs to case {e.department}/{e.case_id}, "
                f"not {first.department}/{first.case_id}; explain one case at a time."
            )
    return events


def limits_for(deployment: Deployment, events: list[CaseEvent]) -> Limits:
    accepted = next((e for e in events if e.type == "accepted"), events[0])
    try:
        deployment.department(accepted.department)
        return deployment.limits(accepted.item)
    except UnknownCodeError as exc:
        raise InputError(f"event {accepted.event_id!r}: {exc}") from exc


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _day(value: date | None) -> str | None:
    return value.isoformat() if value is not None else None


def day_runs(result: CaseClock, calendar: WorkCalendar, last: date) -> list[dict[str, Any]]:
    """Every day after acceptance through `last`, grouped into runs of one kind.

    kinds: ``counted`` (numbered from 1), ``excluded`` (a special procedure's
    day, with its `reason`), ``weekend``, ``holiday``; a counted weekend day
    carries the note that it is a make-up working day (调休).
    """
    assert result.accepted_at is not None
    excluded = result.excluded_dates(calendar)
    days: list[tuple[date, dict[str, str], int]] = []
    day = result.accepted_at.astimezone(result.at.tzinfo).date()
    counted = 0
    while day < last:
        day += timedelta(days=1)
        if not calendar.is_working_day(day):
            days.append((day, {"kind": "weekend" if day.weekday() >= 5 else "holiday"}, 0))
        elif day in excluded:
            reason = result.suspensions[excluded[day]].reason
            days.append((day, {"kind": "excluded", "reason": reason}, 0))
        else:
            counted += 1
            note = {"note": "make-up working day"} if day.weekday() >= 5 else {}
            days.append((day, {"kind": "counted", **note}, counted))
    runs: list[dict[str, Any]] = []
    for key, group in groupby(days, key=lambda d: tuple(d[1].items())):
        members = list(group)
        run: dict[str, Any] = {
            "from": members[0][0].isoformat(),
            "to": members[-1][0].isoformat(),
            **dict(key),
        }
        if run["kind"] == "counted":
            run["first"], run["last"] = members[0][2], members[-1][2]
        runs.append(run)
    return runs


def explanation(
    events: list[CaseEvent],
    result: CaseClock,
    limits: Limits,
    calendar: WorkCalendar,
    deployment: Deployment,
) -> dict[str, Any]:
    """The `esup.explain/1` document for one evaluated case."""
    first = events[0]
    accepted = next((e for e in events if e.type == "accepted"), None)
    overridden = accepted is not None and (
        accepted.promised_days is not None or accepted.legal_days is not None
    )
    item = deployment.item(accepted.item if accepted else first.item)
    doc: dict[str, Any] = {
        "format": FORMAT,
        "case": {
            "department": first.department,
            "case_id": first.case_id,
            "item": item.code,
            "item_name": item.name,
        },
        "at": result.at.isoformat(),
        "state": result.state,
        "level": result.level,
    }
    if result.state != "invalid":
        local = result.at.tzinfo
        end_instant = result.closed_at or result.at
        last = max(result.legal_due or date.min, end_instant.astimezone(local).date())
        doc.update(
            {
                "accepted_at": _iso(result.accepted_at),
                "limits": {
                    "promised_days": result.promised_days - result.extended_days,
                    "legal_days": result.legal_days - result.extended_days,
                    "extended_days": result.extended_days,
                    "warn_days": limits.warn_days,
                    "source": "accepted event" if overridden else "catalog",
                },
                "promised_due_date": _day(result.promised_due),
                "legal_due_date": _day(result.legal_due),
                "promised_deadline": _iso(result.promised_deadline),
                "legal_deadline": _iso(result.legal_deadline),
                "remaining_days": result.remaining_days,
                "overdue_days": result.overdue_days,
                "closed_at": _iso(result.closed_at),
                "outcome": result.outcome,
                "timeliness": result.timeliness,
                "days_used": result.days_used,
                "cards": [{"level": c.level, "at": c.at.isoformat()} for c in result.cards],
                "next_change": _iso(result.next_change),
                "extensions": [{"at": a.isoformat(), "days": d} for a, d in result.extensions],
                "suspensions": [
                    {
                        "reason": s.reason,
                        "requested_days": s.days,
                        "started_at": s.started_at.isoformat(),
                        "resumed_at": _iso(s.resumed_at),
                        "excluded_days": s.excluded_days,
                        "level": s.level,
                        "flags": [{"level": f.level, "at": f.at.isoformat()} for f in s.flags],
                    }
                    for s in result.suspensions
                ],
                "days": day_runs(result, calendar, last),
                "uncovered_years": list(result.uncovered_years),
            }
        )
    doc["anomalies"] = [{"event_id": a.event_id, "problem": a.problem} for a in result.anomalies]
    return doc


_LEVEL_STYLE = {"warning": "yellow", "yellow": "bold yellow", "red": "bold red"}


def render(doc: dict[str, Any], console: Console) -> None:
    """The document as text for a person."""
    case = doc["case"]
    console.print(
        f"Case {case['department']}/{case['case_id']}: {case['item_name']} ({case['item']})"
        f" at {doc['at']}"
    )
    if doc["state"] == "invalid":
        console.print("No acceptance known at that instant; the clock has not started.")
        _render_anomalies(doc, console)
        return
    lim = doc["limits"]
    ext = f" + {lim['extended_days']} extended" if lim["extended_days"] else ""
    console.print(f"Accepted    {doc['accepted_at']}")
    console.print(
        f"Limits      promised {lim['promised_days']}, legal {lim['legal_days']} working days"
        f"{ext} ({lim['source']}); warning at <= {lim['warn_days']} remaining"
    )
    console.print(
        f"Promised    due {doc['promised_due_date']}, yellow from {doc['promised_deadline']}"
    )
    console.print(f"Legal       due {doc['legal_due_date']}, red from {doc['legal_deadline']}")
    if doc["state"] == "closed":
        how = f", {doc['timeliness']}" if doc["timeliness"] else ""
        console.print(
            f"Closed      {doc['outcome']} at {doc['closed_at']}{how}; "
            f"{doc['days_used']} working days used"
        )
    else:
        style = _LEVEL_STYLE.get(doc["level"], "")
        level = f"[{style}]{doc['level'].upper()}[/]" if style else doc["level"].upper()
        console.print(
            f"Level       {level}: {doc['remaining_days']} working days remain, "
            f"{doc['overdue_days']} overdue; next change {doc['next_change'] or 'none'}"
        )
    for card in doc["cards"]:
        console.print(f"Card        {card['level']} reached {card['at']}")
    for e in doc["extensions"]:
        console.print(f"Extension   +{e['days']} working days at {e['at']}")
    for s in doc["suspensions"]:
        resumed = s["resumed_at"] or "still open"
        flags = ", ".join(f"{f['level']} {f['at']}" for f in s["flags"]) or "none"
        console.print(
            f"Procedure   {s['reason']}: {s['requested_days']} days requested, "
            f"{s['started_at']} to {resumed}; {s['excluded_days']} excluded so far; "
            f"level {s['level']} (flags: {flags})"
        )
    table = Table(title="Days after acceptance", show_edge=False)
    for col in ("from", "to", "kind", "counted"):
        table.add_column(col)
    for run in doc["days"]:
        kind = run["kind"] + (f" ({run['reason']})" if "reason" in run else "")
        kind += f" ({run['note']})" if "note" in run else ""
        span = ""
        if run["kind"] == "counted":
            span = (
                str(run["first"])
                if run["first"] == run["last"]
                else f"{run['first']}-{run['last']}"
            )
        table.add_row(run["from"], run["to"], kind, span)
    console.print(table)
    if doc["uncovered_years"]:
        years = ", ".join(str(y) for y in doc["uncovered_years"])
        console.print(
            f"[bold]Calendar does not cover {years}[/]: counted as Monday-Friday; "
            "add the year to calendar.yaml when the State Council publishes it."
        )
    _render_anomalies(doc, console)


def _render_anomalies(doc: dict[str, Any], console: Console) -> None:
    for a in doc["anomalies"]:
        console.print(f"Anomaly     event {a['event_id']!r}: {a['problem']}")
