"""Benchmark of the level-advancing job against a plain indexed select of the due cases.

Fills a fresh database (SQLite, or PostgreSQL with ``--postgres``) with N open
cases, each with its acceptance event, of which 1,000 are due: the projector
derived them 49 days earlier (with their schedules, server.schedules), and
their next change has come since, so each one changes level, most of them
several times (up to red, a card each). Then times
`CaseProjector.advance()`, which brings exactly those up to date, beside a
baseline that only reads the due rows:
``SELECT * FROM cases WHERE next_change_at <= now`` on the same index,
measured in the same run. The due rows and their cards are put back between repeats.

    python bench/advance.py [--postgres] [--cases N] [--due D] [--seed S]
                            [--repeat R] [--strict]

Times are wall-clock, best of `--repeat`. Exit status: 2 when `advance()`
does not change exactly the due cases, leaves any of them due or at level
normal, 1 when a
target is missed and ``--strict`` is given, else 0. See docs/benchmarks.md,
"Level-advancing job".
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from scratch import positive_int, reference_city, scratch_database, verdict
from sqlalchemy import Engine, func, select, text

from casework.clock import Clock
from server.cases import CaseProjector
from server.store import tables
from server.store.database import make_engine
from server.store.migrate import upgrade_engine

TARGET_SECONDS = 0.100
CST = timezone(timedelta(hours=8))
NOW = datetime(2026, 6, 30, 12, 0, tzinfo=CST)  # the projector's clock
DERIVED_AT = NOW - timedelta(days=49)  # when the due cases were last derived
CHUNK = 10_000  # rows per bulk insert


def fill(engine: Engine, n_cases: int, n_due: int, seed: int) -> list[dict[str, Any]]:
    """Insert the open cases and one acceptance event each; return the due cases' rows.

    Not-due cases change next between 1 minute and 30 days after NOW. Due ones
    are of items promising at least 3 working days, accepted half a day to two
    days before DERIVED_AT (49 days before NOW, when `derive_due` derives them:
    not yet red then, and past every item's legal limit, the longest being 30
    working days, by NOW): each has one change or more due by NOW.
    """
    rng = random.Random(seed)
    deployment, departments = reference_city()
    received = NOW.astimezone(UTC)
    due_at = set(rng.sample(range(n_cases), n_due))
    due_rows: list[dict[str, Any]] = []
    cases: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    with engine.begin() as connection:
        for i in range(n_cases):
            department, items = rng.choice(departments)
            item = rng.choice(items)
            case_id = f"C{i:08d}"
            due = i in due_at
            while due and deployment.limits(item).promised_days < 3:
                department, items = rng.choice(departments)
                item = rng.choice(items)
            if due:
                accepted = DERIVED_AT - timedelta(days=rng.uniform(0.5, 2))
            else:
                accepted = NOW - timedelta(days=rng.uniform(0, 10))
            accepted = accepted.replace(microsecond=0)
            change = NOW + (
                -timedelta(seconds=rng.randrange(1, 3600))
                if due
                else timedelta(seconds=rng.randrange(60, 30 * 86400))
            )
            row = {
                "department": department,
                "case_id": case_id,
                "item": item,
                "state": "open",
                "level": "normal",
                "accepted_at": accepted,
                "closed_at": None,
                "outcome": None,
                "timeliness": None,
                "promised_due": None if due else (accepted + timedelta(days=14)).date(),
                "legal_due": None if due else (accepted + timedelta(days=28)).date(),
                "card": None,
                "next_change_at": change,
                "anomalies": 0,
                "updated_at": received,
            }
            cases.append(row)
            if due:
                due_rows.append(row)
            event_id = f"{case_id}-accepted"
            body = {
                "event_id": event_id,
                "case_id": case_id,
                "department": department,
                "item": item,
                "type": "accepted",
                "at": accepted.isoformat(),
            }
            events.append(
                {
                    "department": department,
                    "event_id": event_id,
                    "case_id": case_id,
                    "item": item,
                    "type": "accepted",
                    "at": accepted,
                    "seq": i + 1,
                    "source_agent": "bench-agent",
                    "received_at": received,
                    "body": json.dumps(body, ensure_ascii=False, separators=(",", ":")),
                }
            )
            if len(cases) >= CHUNK:
                connection.execute(tables.cases.insert(), cases)
                connection.execute(tables.events.insert(), events)
                cases, events = [], []
        if cases:
            connection.execute(tables.cases.insert(), cases)
            connection.execute(tables.events.insert(), events)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE" if engine.dialect.name != "sqlite" else "ANALYZE"))
    return due_rows


@dataclass
class Due:
    """The due cases' rows and cards as stored before `advance()`."""

    rows: list[dict[str, Any]]
    cards: list[dict[str, Any]]


def derive_due(
    engine: Engine,
    make: Callable[[datetime], CaseProjector],
    rows: list[dict[str, Any]],
    leap: bool,
) -> Due:
    """Derive the due cases as the projector last did before `advance()`; their rows and
    cards then.

    With `leap`, at DERIVED_AT: most then pass several levels by NOW. Else one second
    before the last change each has by NOW, as when the job runs every minute: each
    passes one level (two where two fall on the same instant).
    """
    keys = [(r["department"], r["case_id"]) for r in rows]
    make(DERIVED_AT).refresh(keys)
    ids = [r["case_id"] for r in rows]
    c = tables.cases.c
    if not leap:
        last: dict[datetime, list[tuple[str, str]]] = {}
        with engine.connect() as connection:
            query = select(c.department, c.case_id, c.schedule).where(c.case_id.in_(ids))
            for department, case_id, schedule in connection.execute(query):
                steps = json.loads(schedule)["steps"]
                begun = max(step[0] for step in steps if step[0] <= NOW.timestamp())
                last.setdefault(datetime.fromtimestamp(begun, UTC), []).append(
                    (department, case_id)
                )
        for at, group in last.items():
            make(at - timedelta(seconds=1)).refresh(group)
    k = tables.cards.c
    with engine.connect() as connection:
        stored = connection.execute(select(tables.cases).where(c.case_id.in_(ids))).mappings()
        cards = connection.execute(select(tables.cards).where(k.case_id.in_(ids))).mappings()
        return Due([dict(r) for r in stored], [dict(r) for r in cards])


def put_back(engine: Engine, due: Due) -> None:
    """Restore the due cases' stored rows and cards."""
    ids = [r["case_id"] for r in due.rows]
    with engine.begin() as connection:
        connection.execute(tables.cases.delete().where(tables.cases.c.case_id.in_(ids)))
        connection.execute(tables.cards.delete().where(tables.cards.c.case_id.in_(ids)))
        connection.execute(tables.cases.insert(), due.rows)
        if due.cards:
            connection.execute(tables.cards.insert(), due.cards)


def levels_of(engine: Engine, rows: list[dict[str, Any]]) -> list[tuple[str, int]]:
    c = tables.cases.c
    query = (
        select(c.level, func.count())
        .where(c.case_id.in_([r["case_id"] for r in rows]))
        .group_by(c.level)
        .order_by(func.count().desc())
    )
    with engine.connect() as connection:
        return [(level, int(count)) for level, count in connection.execute(query)]


def due_count(engine: Engine) -> int:
    c = tables.cases.c
    with engine.connect() as connection:
        query = select(func.count()).select_from(tables.cases).where(c.next_change_at <= NOW)
        return int(connection.execute(query).scalar_one())


def read_due(engine: Engine) -> int:
    """The baseline: every column of the due rows, through the `next_change_at` index."""
    query = select(tables.cases).where(tables.cases.c.next_change_at <= NOW)
    with engine.connect() as connection:
        return len(connection.execute(query).all())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL instead of SQLite")
    parser.add_argument("--cases", type=positive_int, default=100_000, help="open cases stored")
    parser.add_argument(
        "--due", type=positive_int, default=1_000, help="of those, due at the instant"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--repeat", type=positive_int, default=3, help="timed runs; the best counts"
    )
    parser.add_argument(
        "--leap",
        action="store_true",
        help="due cases last derived 49 days before, most passing several levels at once",
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    if args.due > args.cases:
        parser.error(f"--due {args.due} is more than --cases {args.cases}")
    out = Console(highlight=False, width=120)
    kind = "postgresql" if args.postgres else "sqlite"
    deployment, _ = reference_city()

    with (
        tempfile.TemporaryDirectory(prefix="esup-bench-") as tmp,
        scratch_database(kind, Path(tmp), "advance") as url,
    ):
        engine = make_engine(url)
        try:
            upgrade_engine(engine)
            started = time.perf_counter()
            clock = Clock.for_deployment(deployment)

            def projector_at(at: datetime) -> CaseProjector:
                return CaseProjector(engine, clock, deployment, now=lambda: at)

            rows = fill(engine, args.cases, args.due, args.seed)
            due = derive_due(engine, projector_at, rows, args.leap)
            due_rows = due.rows
            out.print(
                f"inserted {args.cases:,} open cases ({len(due_rows):,} due) and their events "
                f"into {kind} in {time.perf_counter() - started:.0f} s (seed {args.seed}); "
                f"now {NOW.isoformat()}"
            )
            projector = CaseProjector(engine, clock, deployment, now=lambda: NOW)
            esup_times: list[tuple[float, float]] = []
            base_times: list[float] = []
            for _ in range(args.repeat):
                put_back(engine, due)
                start, cpu = time.perf_counter(), time.process_time()
                changed = projector.advance()
                esup_times.append((time.perf_counter() - start, time.process_time() - cpu))
                left = due_count(engine)
                levels = levels_of(engine, due_rows)
                if changed != len(due_rows) or left != 0 or dict(levels).get("normal"):
                    print(
                        f"advance() changed {changed:,} cases of {len(due_rows):,} due and "
                        f"left {left:,} due; their levels now: {levels}",
                        file=sys.stderr,
                    )
                    return 2
                put_back(engine, due)
                start = time.perf_counter()
                read = read_due(engine)
                base_times.append(time.perf_counter() - start)
                if read != (d := len(due_rows)):
                    print(
                        f"the baseline read {read:,} rows, not {len(due_rows):,}", file=sys.stderr
                    )
                    return 2
        finally:
            engine.dispose()

    esup_s, esup_cpu = min(esup_times)
    base_s = min(base_times)
    out.print(
        "levels of the due cases after advance(): "
        + ", ".join(f"{level} {count:,}" for level, count in levels)
    )
    table = Table(title=f"Level-advancing job on {kind}: best of {args.repeat}")
    for name in ("implementation", "open cases", "due", "wall ms", "CPU ms", "× baseline time"):
        table.add_column(name, justify="left" if name == "implementation" else "right")
    n, d = f"{args.cases:,}", f"{len(due_rows):,}"
    table.add_row(
        "esup CaseProjector.advance()",
        n,
        d,
        f"{esup_s * 1000:.1f}",
        f"{esup_cpu * 1000:.1f}",
        f"{esup_s / base_s:.1f}",
    )
    table.add_row(
        "baseline: indexed SELECT of the due rows", n, d, f"{base_s * 1000:.1f}", "", "1.0"
    )
    out.print(table)
    ok = verdict(
        f"advance {kind} <= {TARGET_SECONDS * 1000:.0f} ms",
        esup_s <= TARGET_SECONDS,
        f"{esup_s * 1000:.1f} ms",
    )
    return 1 if args.strict and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
