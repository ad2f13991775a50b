"""`esup config check [DIR]`: load a configuration directory and report on it.

The directory's scores.yaml (the server's evaluation rules), when present, is
checked too. On success prints ``OK`` and a one-paragraph summary to stdout and returns 0.
On failure prints every problem, one per line, to stderr and returns 2. The
output is plain text, so it reads the same in a terminal, a pipe or a CI log.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections import Counter
from pathlib import Path
from typing import IO

from casework.calendar import WorkCalendar
from casework.config import CATEGORIES, Deployment
from casework.configfiles import load_config
from casework.errors import ConfigErrors

#: Exit status when the configuration has problems (argparse uses 2 for usage errors too).
EXIT_INVALID = 2

_CATEGORY_NAMES = {
    "government": "government",
    "party_mass": "party and mass organisations",
    "stationed": "stationed units",
}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `config` and its `check` action to the `esup` command."""
    config = sub.add_parser(
        "config",
        help="check a configuration directory",
        description="Work with a deployment's configuration directory.",
    )
    actions = config.add_subparsers(dest="config_action", required=True, metavar="ACTION")
    check = actions.add_parser(
        "check",
        help="load and cross-check every file; print a summary or every problem",
        description="Load esup.yaml, departments.yaml, catalog.yaml and calendar.yaml from DIR, "
        "check them and their cross-references, and print a summary (exit 0) or every "
        "problem found (exit 2).",
    )
    check.add_argument(
        "directory",
        nargs="?",
        type=Path,
        default=Path("config"),
        metavar="DIR",
        help="configuration directory (default: config)",
    )
    check.set_defaults(func=run_check)


def run_check(
    args: argparse.Namespace, *, stdout: IO[str] | None = None, stderr: IO[str] | None = None
) -> int:
    """The `config check` handler: 0 when the directory loads, 2 with every problem otherwise."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    directory: Path = args.directory
    try:
        deployment = load_config(directory)
        _check_score_rules(directory)
    except ConfigErrors as exc:
        for problem in exc.errors:
            print(problem, file=err)
        print(f"{len(exc.errors)} problem(s) in {directory}; nothing was loaded.", file=err)
        return EXIT_INVALID
    print("OK", file=out)
    print(textwrap.fill(summary(deployment), width=88, break_on_hyphens=False), file=out)
    print(coverage(WorkCalendar.from_config(deployment.calendar)), file=out)
    return 0


def _check_score_rules(directory: Path) -> None:
    """The server's scores.yaml, when the directory has one; raises ConfigErrors."""
    from server.scores.rules import rules_for  # only needed where scores are configured

    rules_for(directory)


def coverage(calendar: WorkCalendar) -> str:
    """Through which year holidays are known, and what happens after it."""
    last = calendar.last_covered_year
    if last is None:
        return "Calendar: no year's holidays are known; every date counts as Monday-Friday."
    return (
        f"Calendar: holidays known through {last}; dates from {last + 1} count as "
        "Monday-Friday until that year is added to calendar.yaml."
    )


def summary(deployment: Deployment) -> str:
    """One paragraph: city, departments by category, supervision, catalog and calendar."""
    settings = deployment.settings
    by_category = Counter(d.category for d in deployment.departments)
    categories = ", ".join(f"{by_category[c]} {_CATEGORY_NAMES[c]}" for c in CATEGORIES)
    approvals = deployment.items_of_kind("approval")
    sub_items = sum(len(i.sub_items) for i in approvals)
    petitions = len(deployment.items_of_kind("petition"))
    instructions = len(deployment.items_of_kind("instruction"))
    years = deployment.calendar.configured_years()
    calendar = (
        "calendar years configured: " + ", ".join(str(y) for y in years)
        if years
        else "no calendar years configured (the chinese-calendar package's years apply)"
    )
    overrides = len(deployment.calendar.holidays) + len(deployment.calendar.workdays)
    return (
        f"{settings.city} ({settings.timezone}): {len(deployment.departments)} departments "
        f"({categories}), {len(deployment.supervised_departments())} under supervision; "
        f"{len(approvals)} approval items with {sub_items} sub-items, {petitions} petition "
        f"categories and {instructions} instruction kinds; {calendar}, "
        f"{overrides} single-date override(s); working-day window "
        f"{deployment.calendar.window.first_year}-{deployment.calendar.window.last_year}."
    )
