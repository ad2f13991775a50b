"""Benchmark of the figures for a year, every department, against a hand-written GROUP BY.

Inserts a seeded year of cases (and their cards) straight into the `cases` and
`cards` tables of a fresh database (SQLite, or PostgreSQL with ``--postgres``),
spread over the reference city's supervised departments and their items, then
times `figures_by_department` for the year 2025 beside a hand-written SQL
``GROUP BY department`` of the same counts, measured in the same run.

    python bench/figures.py [--postgres] [--cases N] [--seed S] [--repeat R] [--strict]

Times are wall-clock (the work is the database's; on PostgreSQL another
process), best of `--repeat`. Exit status: 2 when esup and the hand-written
SQL disagree on any count (the first differences are printed), 1 when a
target is missed and ``--strict`` is given, else 0. See docs/benchmarks.md,
"Figures".
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from scratch import positive_int, reference_city, scratch_database, verdict
from sqlalchemy import Engine, bindparam, text

from casework.config import Deployment
from server.dailycounts import rebuild
from server.figures import COUNTS, figures_by_department, period_instants
from server.store import tables
from server.store.database import make_engine
from server.store.migrate import upgrade_engine
from server.store.tables import UTCDateTime

TARGET_SECONDS = 1.0
CST = timezone(timedelta(hours=8))
START, END = date(2025, 1, 1), date(2026, 1, 1)
CHUNK = 10_000  # rows per bulk insert

Counts = dict[str, dict[str, int]]

# -- the year of cases -----------------------------------------------------------------------


def insert_year(engine: Engine, n_cases: int, seed: int) -> tuple[int, int]:
    """Insert `n_cases` cases accepted from November 2024 to December 2025; (cases, cards).

    85% closed (95% completed: 60% early, 25% on time, 3% immediate, 12% late; 5%
    withdrawn) a few working weeks after acceptance, some in 2026; 15% still open;
    1% invalid. Cards: warning for 20%, yellow for 9%, red for 4%, a few voided.
    """
    rng = random.Random(seed)
    _, departments = reference_city()
    first = datetime(2024, 11, 1, tzinfo=CST)
    span = int((datetime(2026, 1, 1, tzinfo=CST) - first).total_seconds())
    updated = datetime(2026, 11, 30, tzinfo=UTC)
    case_rows: list[dict[str, Any]] = []
    card_rows: list[dict[str, Any]] = []
    n_cards = 0
    with engine.begin() as connection:
        for i in range(n_cases):
            department, items = rng.choice(departments)
            accepted = first + timedelta(seconds=rng.randrange(span))
            row: dict[str, Any] = {
                "department": department,
                "case_id": f"C{i:08d}",
                "item": rng.choice(items),
                "state": "open",
                "level": "normal",
                "accepted_at": accepted,
                "closed_at": None,
                "outcome": None,
                "timeliness": None,
                "promised_due": (accepted + timedelta(days=14)).date(),
                "legal_due": (accepted + timedelta(days=28)).date(),
                "card": None,
                "next_change_at": accepted + timedelta(days=12),
                "anomalies": 0,
                "updated_at": updated,
            }
            roll = rng.random()
            if roll < 0.01:
                row.update(state="invalid", level="invalid", accepted_at=None, next_change_at=None)
                row.update(promised_due=None, legal_due=None)
            elif roll < 0.86:
                closed = accepted + timedelta(hours=rng.randrange(1, 40 * 24))
                if rng.random() < 0.05:
                    row.update(outcome="withdrawn", level="withdrawn")
                else:
                    t = rng.random()
                    timeliness = (
                        "early" if t < 0.6 else "on_time" if t < 0.85 else
                        "immediate" if t < 0.88 else "late"
                    )  # fmt: skip
                    row.update(outcome="completed", level="completed", timeliness=timeliness)
                row.update(state="closed", closed_at=closed, next_change_at=None)
            if row["state"] != "invalid":
                end = row["closed_at"] or accepted + timedelta(days=60)
                c = rng.random()
                levels = (
                    ("warning", "yellow", "red") if c < 0.04 else ("warning", "yellow")
                    if c < 0.09 else ("warning",) if c < 0.2 else ()
                )  # fmt: skip
                at = accepted
                for level in levels:
                    at = at + (end - at) * rng.uniform(0.3, 0.9)
                    voided = rng.random() < 0.02
                    card_rows.append(
                        {
                            "department": department,
                            "case_id": row["case_id"],
                            "level": level,
                            "reached_at": at,
                            "voided_at": at + timedelta(days=3) if voided else None,
                            "void_reason": "appeal upheld" if voided else None,
                        }
                    )
                    row["card"] = level
            case_rows.append(row)
            if len(case_rows) >= CHUNK:
                connection.execute(tables.cases.insert(), case_rows)
                case_rows = []
            if len(card_rows) >= CHUNK:
                n_cards += len(card_rows)
                connection.execute(tables.cards.insert(), card_rows)
                card_rows = []
        if case_rows:
            connection.execute(tables.cases.insert(), case_rows)
        if card_rows:
            n_cards += len(card_rows)
            connection.execute(tables.cards.insert(), card_rows)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE" if engine.dialect.name != "sqlite" else "ANALYZE"))
    return n_cases, n_cards


# -- the baseline: the same counts, written by hand -----------------------------------------

VALID = "c.state <> 'invalid'"
OPEN_AT_END = f"{VALID} AND c.accepted_at < :e AND (c.closed_at IS NULL OR c.closed_at >= :e)"
CLOSED_IN = f"{VALID} AND c.closed_at >= :s AND c.closed_at < :e"
CASE_COUNTS = {
    "received": f"{VALID} AND c.accepted_at >= :s AND c.accepted_at < :e",
    "carried_over": (
        f"{VALID} AND c.accepted_at < :s AND (c.closed_at IS NULL OR c.closed_at >= :s)"
    ),
    "completed": f"{CLOSED_IN} AND c.outcome IN ('completed', 'withdrawn')",
    "withdrawn": f"{CLOSED_IN} AND c.outcome = 'withdrawn'",
    "early": f"{CLOSED_IN} AND c.outcome = 'completed' AND c.timeliness = 'early'",
    "on_time": (
        f"{CLOSED_IN} AND c.outcome = 'completed' AND c.timeliness IN ('on_time', 'immediate')"
    ),
    "late": f"{CLOSED_IN} AND c.outcome = 'completed' AND c.timeliness = 'late'",
    "open_at_end": OPEN_AT_END,
    "overdue_at_end": f"{OPEN_AT_END} AND o.case_id IS NOT NULL",
    "invalid": "c.state = 'invalid'",
}
CASES_SQL = f"""
SELECT c.department, {", ".join(f"SUM(CASE WHEN {w} THEN 1 ELSE 0 END) AS {n}" for n, w in CASE_COUNTS.items())}
FROM cases AS c
LEFT JOIN (
    SELECT DISTINCT department, case_id FROM cards
    WHERE level IN ('yellow', 'red') AND voided_at IS NULL AND reached_at < :e
) AS o ON o.department = c.department AND o.case_id = c.case_id
GROUP BY c.department
"""  # noqa: E501
CARDS_SQL = """
SELECT c.department,
       SUM(CASE WHEN k.level = 'warning' THEN 1 ELSE 0 END) AS warnings,
       SUM(CASE WHEN k.level = 'yellow' THEN 1 ELSE 0 END) AS yellow_cards,
       SUM(CASE WHEN k.level = 'red' THEN 1 ELSE 0 END) AS red_cards
FROM cards AS k JOIN cases AS c ON c.department = k.department AND c.case_id = k.case_id
WHERE c.state <> 'invalid' AND k.voided_at IS NULL AND k.reached_at >= :s AND k.reached_at < :e
GROUP BY c.department
"""


def hand_written(
    engine: Engine, deployment: Deployment, statements: Sequence[str] = (CASES_SQL, CARDS_SQL)
) -> Counts:
    """The counts per department from two plain SQL statements (or only those given)."""
    s, e = period_instants(deployment, START, END)
    params = [bindparam("s", type_=UTCDateTime()), bindparam("e", type_=UTCDateTime())]
    found: Counts = {}
    with engine.connect() as connection:
        for sql in statements:
            query = text(sql).bindparams(*params)
            for row in connection.execute(query, {"s": s, "e": e}).mappings():
                counts = found.setdefault(row["department"], {})
                counts.update((k, int(v or 0)) for k, v in row.items() if k != "department")
    return found


def esup(engine: Engine, deployment: Deployment) -> Counts:
    """The counts per department from `figures_by_department`."""
    by_department = figures_by_department(engine, deployment, START, END)
    return {code: f.counts() for code, f in by_department.items()}


def best(run: Callable[[], object], repeat: int) -> float:
    """Best wall-clock seconds of `repeat` calls of `run`."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def differences(mine: Counts, theirs: Counts) -> list[str]:
    out = []
    for code in sorted({*mine, *theirs}):
        a, b = mine.get(code, {}), theirs.get(code, {})
        for name in COUNTS:
            if a.get(name, 0) != b.get(name, 0):
                out.append(f"{code} {name}: esup {a.get(name, 0)}, hand-written {b.get(name, 0)}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL instead of SQLite")
    parser.add_argument("--cases", type=positive_int, default=100_000, help="cases in the year")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--repeat", type=positive_int, default=3, help="timed runs; the best counts"
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    out = Console(highlight=False, width=120)
    kind = "postgresql" if args.postgres else "sqlite"
    deployment, _ = reference_city()

    with (
        tempfile.TemporaryDirectory(prefix="esup-bench-") as tmp,
        scratch_database(kind, Path(tmp), "figures") as url,
    ):
        engine = make_engine(url)
        try:
            upgrade_engine(engine)
            started = time.perf_counter()
            n_cases, n_cards = insert_year(engine, args.cases, args.seed)
            out.print(
                f"inserted {n_cases:,} cases and {n_cards:,} cards into {kind} in "
                f"{time.perf_counter() - started:.0f} s (seed {args.seed}); period "
                f"[{START}, {END})"
            )
            # The projector keeps the daily counts as it writes cases; rows inserted
            # behind its back need them built once, as a server does on its first start.
            started = time.perf_counter()
            n_days = rebuild(engine, deployment.settings.zone)
            out.print(
                f"built {n_days:,} rows of daily counts from them in "
                f"{time.perf_counter() - started:.1f} s (not timed below)"
            )
            mine, theirs = esup(engine, deployment), hand_written(engine, deployment)
            diffs = differences(mine, theirs)
            if diffs:
                print("\n".join(diffs[:20]), file=sys.stderr)
                return 2
            total = {name: sum(c.get(name, 0) for c in mine.values()) for name in COUNTS}
            out.print(
                f"check: {len(mine)} departments agree; "
                + ", ".join(f"{k} {v:,}" for k, v in total.items())
            )
            esup_s = best(lambda: esup(engine, deployment), args.repeat)
            base_s = best(lambda: hand_written(engine, deployment), args.repeat)
            parts = [
                (name, best(lambda sql=sql: hand_written(engine, deployment, [sql]), args.repeat))
                for name, sql in (("cases", CASES_SQL), ("cards", CARDS_SQL))
            ]
        finally:
            engine.dispose()

    table = Table(
        title=f"Figures for {START.year}, every department, {kind}: best of {args.repeat}"
    )
    for name in ("implementation", "cases", "wall s", "× baseline time"):
        table.add_column(name, justify="left" if name == "implementation" else "right")
    table.add_row(
        "esup figures_by_department", f"{n_cases:,}", f"{esup_s:.3f}", f"{esup_s / base_s:.2f}"
    )
    table.add_row("baseline: hand-written GROUP BY", f"{n_cases:,}", f"{base_s:.3f}", "1.00")
    out.print(table)
    out.print(
        "of the baseline: "
        + ", ".join(f"the statement over {name} {secs:.3f} s" for name, secs in parts)
    )
    ok = verdict(
        f"figures {kind} <= {TARGET_SECONDS:.0f} s", esup_s <= TARGET_SECONDS, f"{esup_s:.3f} s"
    )
    return 1 if args.strict and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
