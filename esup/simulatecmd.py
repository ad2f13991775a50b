"""`esup simulate --out DIR [--seed N] [--scale X]`: write a simulated year into drop folders.

Loads the configuration (default ``config``), simulates the reference year
(`esup.simulation.simulate`), writes one folder per group of departments
under DIR with a progress bar, then ``summary.json``, and prints the year's
expected figures. Exit 0 on success, 2 on a bad configuration or argument.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import IO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from casework.configfiles import load_config
from casework.errors import ConfigErrors, EsupError
from esup.dropfolders import WrittenFile
from esup.simulation import SUMMARY_FILE, ensure_empty, simulate
from esup.simulator import YearShape


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "simulate",
        help="write a simulated year of case events into drop folders",
        description="Simulate the reference year (2025) of the supervised departments' "
        "workflow systems and write it as JSON Lines files into one drop folder per group "
        "of departments under DIR, with summary.json saying what esup should make of it.",
    )
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output directory")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument(
        "--scale", type=float, default=1.0, help="size of the year, 1 = the reference city"
    )
    p.add_argument("--config", type=Path, default=Path("config"), help="configuration directory")
    p.add_argument("--group-size", type=int, default=8, help="departments per drop folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, *, stdout: IO[str] | None = None) -> int:
    console = Console(file=stdout or sys.stdout, highlight=False)
    try:
        ensure_empty(args.out)
        deployment = load_config(args.config)
        shape = YearShape.scaled(args.scale)
        with console.status("Simulating the year…"):
            sim = simulate(deployment, seed=args.seed, shape=shape, group_size=args.group_size)
    except (ConfigErrors, EsupError, OSError) as exc:
        print(f"esup simulate: {exc}", file=sys.stderr)
        return 2
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("Writing files", total=len(sim.files))

        def advance(written: WrittenFile) -> None:
            progress.update(task, advance=1, description=f"Writing {written.file.relative}")

        summary = sim.write(args.out, advance)
    figures = summary["figures"]["all"]
    table = Table(title=f"Expected figures of {sim.year} (seed {sim.seed})")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in figures.items():
        if isinstance(value, dict):
            shown = "—" if value["value"] is None else f"{value['value']:.1%}"
            table.add_row(name, f"{shown} ({value['numerator']:,} / {value['denominator']:,})")
        else:
            table.add_row(name, f"{value:,}")
    console.print(table)
    console.print(
        f"{summary['lines']:,} lines in {summary['files']:,} files, "
        f"{len(summary['folders'])} folders under {args.out}; "
        f"{summary['ingest']['rejected']} malformed, "
        f"{len(summary['contradictory'])} contradictory; see {args.out / SUMMARY_FILE}"
    )
    return 0
