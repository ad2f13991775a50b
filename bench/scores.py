"""Benchmark of scoring all 94 departments for a year, against a hand-written GROUP BY.

Inserts a seeded year of cases and their cards straight into the tables of a
fresh database (SQLite, or PostgreSQL with ``--postgres``) with bench/figures.py's
generator, plus a year of the evaluation office's inputs for every department
(satisfaction per month and platform, superior and service-user scores, a few
inspections, faults, bonuses and a veto). Then times `ScoreService.compute` for
2025 (every department's parts, ratings, ranks and flags, and 2024 for the
growth rule) beside the baseline measured in the same run: the hand-written
``GROUP BY department, level`` of the year's unvoided cards alone.

    python bench/scores.py [--postgres] [--cases N] [--seed S] [--repeat R] [--strict]

Times are wall-clock, best of `--repeat`. Exit status: 2 when esup's card
counts disagree with the hand-written statement, 1 when the target is missed
and ``--strict`` is given, else 0. See docs/benchmarks.md, "Scores".
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from figures import insert_year
from rich.console import Console
from rich.table import Table
from scratch import positive_int, reference_city, scratch_database, verdict
from sqlalchemy import Engine, bindparam, text

from casework.config import Deployment
from server.scores.cardcounts import month_bounds
from server.scores.period import Period
from server.scores.rules import PLATFORMS, ScoreRules
from server.scores.service import ScoreService
from server.store.database import make_engine
from server.store.migrate import upgrade_engine
from server.store.scoretables import score_evaluations, score_findings, score_satisfaction
from server.store.tables import UTCDateTime

TARGET_SECONDS = 2.0
YEAR = Period(2025)
NOW = datetime(2026, 1, 5, tzinfo=UTC)

BASELINE_SQL = """
SELECT department, level, COUNT(*) AS n
FROM cards
WHERE voided_at IS NULL AND reached_at >= :s AND reached_at < :e
GROUP BY department, level
"""


def insert_inputs(engine: Engine, deployment: Deployment, seed: int) -> int:
    """A year of the office's inputs for every department; the number of rows."""
    rng = random.Random(seed)
    codes = [d.code for d in deployment.departments]
    satisfaction = [
        {"department": code, "month": month, "platform": platform,
         "satisfied": rng.randrange(50, 200), "basically_satisfied": rng.randrange(0, 20),
         "dissatisfied": rng.randrange(0, 15), "imported_at": NOW}
        for code in codes for month in YEAR.months() for platform in PLATFORMS
    ]  # fmt: skip
    evaluations = [
        {"department": code, "period": period, "kind": kind,
         "score": Decimal(rng.randrange(7000, 10000)) / 100, "imported_at": NOW}
        for code in codes for period in ("2024", "2025") for kind in ("superior", "service_users")
    ]  # fmt: skip
    findings: list[dict[str, Any]] = []
    for n, kind in enumerate(("inspection", "fault", "bonus") * 40 + ("veto",)):
        findings.append(
            {"kind": kind, "record_id": f"R{n:04d}", "department": rng.choice(codes),
             "day": date(2025, rng.randrange(1, 13), 1), "points": Decimal(rng.randrange(1, 4)),
             "approval_ref": "考评〔2025〕1号" if kind == "bonus" else None,
             "description": "", "imported_at": NOW}
        )  # fmt: skip
    with engine.begin() as connection:
        connection.execute(score_satisfaction.insert(), satisfaction)
        connection.execute(score_evaluations.insert(), evaluations)
        connection.execute(score_findings.insert(), findings)
    return len(satisfaction) + len(evaluations) + len(findings)


def baseline(engine: Engine, deployment: Deployment) -> dict[tuple[str, str], int]:
    """The year's unvoided cards per department and level, from one plain statement."""
    bounds = month_bounds(deployment.settings.zone, YEAR)
    query = text(BASELINE_SQL).bindparams(
        bindparam("s", type_=UTCDateTime()), bindparam("e", type_=UTCDateTime())
    )
    with engine.connect() as connection:
        rows = connection.execute(query, {"s": bounds[0][1], "e": bounds[-1][2]})
        return {(d, level): int(n) for d, level, n in rows}


def esup_counts(service: ScoreService) -> dict[tuple[str, str], int]:
    scores = service.compute(YEAR, evidence=False)
    out: dict[tuple[str, str], int] = {}
    for d in scores.departments:
        detail = d.part("esupervision").detail
        for level, key in (("warning", "warnings"), ("yellow", "yellow"), ("red", "red")):
            if detail[key]:
                out[d.code, level] = int(detail[key])
    return out


def best(run: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL instead of SQLite")
    parser.add_argument("--cases", type=positive_int, default=1_000_000, help="cases in the year")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=positive_int, default=3, help="timed runs; best counts")
    parser.add_argument("--strict", action="store_true", help="exit 1 when the target is missed")
    args = parser.parse_args(argv)
    out = Console(highlight=False, width=120)
    kind = "postgresql" if args.postgres else "sqlite"
    deployment, _ = reference_city()

    with (
        tempfile.TemporaryDirectory(prefix="esup-bench-") as tmp,
        scratch_database(kind, Path(tmp), "scores") as url,
    ):
        engine = make_engine(url)
        try:
            upgrade_engine(engine)
            started = time.perf_counter()
            n_cases, n_cards = insert_year(engine, args.cases, args.seed)
            n_inputs = insert_inputs(engine, deployment, args.seed)
            out.print(
                f"inserted {n_cases:,} cases, {n_cards:,} cards and {n_inputs:,} input rows "
                f"into {kind} in {time.perf_counter() - started:.0f} s (seed {args.seed})"
            )
            service = ScoreService(engine, deployment, ScoreRules())
            mine, theirs = esup_counts(service), baseline(engine, deployment)
            if mine != theirs:
                diffs = sorted(set(mine.items()) ^ set(theirs.items()))[:20]
                print("card counts differ:", diffs, file=sys.stderr)
                return 2
            out.print(
                f"check: {len(deployment.departments)} departments scored; card counts agree "
                f"with the baseline ({sum(theirs.values()):,} cards in {YEAR})"
            )
            esup_s = best(lambda: service.compute(YEAR, evidence=False), args.repeat)
            with_evidence_s = best(lambda: service.compute(YEAR, evidence=True), 1)
            base_s = best(lambda: baseline(engine, deployment), args.repeat)
        finally:
            engine.dispose()

    table = Table(title=f"Scores for {YEAR}, all 94 departments, {kind}: best of {args.repeat}")
    for name in ("implementation", "cases", "wall s", "× baseline time"):
        table.add_column(name, justify="left" if name == "implementation" else "right")
    table.add_row(
        "esup ScoreService.compute", f"{n_cases:,}", f"{esup_s:.3f}", f"{esup_s / base_s:.2f}"
    )
    table.add_row(
        "  the same, listing every card as evidence",
        f"{n_cases:,}",
        f"{with_evidence_s:.3f}",
        f"{with_evidence_s / base_s:.2f}",
    )
    table.add_row("baseline: hand-written GROUP BY of the cards", f"{n_cases:,}",
                  f"{base_s:.3f}", "1.00")  # fmt: skip
    out.print(table)
    ok = verdict(
        f"scores {kind} <= {TARGET_SECONDS:.0f} s", esup_s <= TARGET_SECONDS, f"{esup_s:.3f} s"
    )
    return 1 if args.strict and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
