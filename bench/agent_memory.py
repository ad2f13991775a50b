"""Benchmark of the agent's resident memory with 100,000 open cases, beside Debian's
prometheus-node-exporter measured in the same run.

Builds a state database of N open cases of the reference city (config/) through
the live clocks' event sink in a child process, then starts the real agent on
it, `esup-agent run --config FILE` (every supervised department, the catalog
from config/, a drop folder, /metrics on a free port; its server is not there,
and nothing waits to be delivered), and waits until its /metrics serves the N
open cases. Beside it runs `prometheus-node-exporter` on a free port. Both are
scraped `--scrapes` times, then their resident set sizes (RSS) are read from
/proc and printed with the ratio, split into anonymous memory (heap) and
file-backed pages (shared libraries, the executable).

Where the memory goes: afterwards an agent-like process (bench/agentprocess.py
`run`) imports the same libraries one at a time and opens the same state,
printing what each step added (`--no-steps` leaves it out).

    python bench/agent_memory.py [--cases N] [--seed S] [--scrapes K]
                                 [--state DIR] [--strict] [--no-steps]

Exit status: 2 when the agent does not track the N cases, 1 when the target
is missed and ``--strict`` is given, else 0. See docs/benchmarks.md, "Agent
memory and idle CPU".
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from agentprocess import (
    build_state,
    open_cases_served,
    rss_of,
    rss_parts_of,
    scrape,
    start_agent,
    start_node_exporter,
    start_real_agent,
    stop_agent,
    stop_process,
)
from rich.console import Console
from rich.table import Table
from scratch import positive_int, verdict

TARGET_RATIO = 1.5  # agent RSS / node exporter RSS


def mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=positive_int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scrapes", type=positive_int, default=3)
    parser.add_argument("--state", type=Path, help="a folder holding a built state to reuse")
    parser.add_argument("--strict", action="store_true")
    parser.add_argument("--no-steps", action="store_true", help="skip the step-by-step process")
    args = parser.parse_args()
    console = Console()

    with tempfile.TemporaryDirectory(prefix="esup-bench-agent-") as scratch:
        state = args.state or Path(scratch)
        if not (state / "agent.db").exists():
            console.print(f"building {args.cases:,} open cases ...")
            built = build_state(state, args.cases, args.seed)
            console.print(
                f"built: {built['events']:,} events recorded in {built['record_seconds']:.1f} s,"
                f" {built['open_cases']:,} cases evaluated in {built['evaluate_seconds']:.1f} s,"
                f" {built['flags']:,} flags; levels {built['levels']};"
                f" state {mb(built['state_bytes'])} on disk;"
                f" the building process peaked near {mb(built['rss_bytes'])}"
            )
        exporter, exporter_port = start_node_exporter()
        agent, agent_port = start_real_agent(state, args.cases)
        try:
            served = open_cases_served(agent_port)
            for _ in range(args.scrapes):
                agent_bytes = scrape(agent_port)
                exporter_bytes = scrape(exporter_port)
            agent_rss = rss_of(agent.pid)
            exporter_rss = rss_of(exporter.pid)
            agent_parts = rss_parts_of(agent.pid)
            exporter_parts = rss_parts_of(exporter.pid)
        finally:
            stop_agent(agent)
            stop_process(exporter)
        report: dict[str, Any] = {"steps": []}
        if not args.no_steps:
            emulated, report = start_agent(state)
            stop_agent(emulated)

    if served < args.cases and not args.state:
        console.print(f"the agent serves {served:,} open cases, not {args.cases:,}")
        return 2

    if report["steps"]:
        steps = Table(title="an agent-like process, resident memory step by step")
        steps.add_column("step")
        steps.add_column("RSS", justify="right")
        steps.add_column("added", justify="right")
        before = 0
        for name, rss in report["steps"]:
            steps.add_row(name, mb(rss), mb(rss - before) if before else "")
            before = rss
        console.print(steps)

    table = Table(title=f"resident memory, {served:,} open cases tracked")
    table.add_column("process")
    table.add_column("RSS", justify="right")
    table.add_column("anonymous", justify="right")
    table.add_column("file-backed", justify="right")
    table.add_column("/metrics body", justify="right")
    for name, rss, parts, body in (
        ("esup-agent run", agent_rss, agent_parts, agent_bytes),
        ("prometheus-node-exporter (baseline)", exporter_rss, exporter_parts, exporter_bytes),
    ):
        table.add_row(name, mb(rss), mb(parts["RssAnon"]), mb(parts["RssFile"]), f"{body:,} B")
    console.print(table)
    ratio = agent_rss / exporter_rss
    print(f"ratio agent / node exporter: {ratio:.2f}")
    ok = verdict(f"RSS ratio <= {TARGET_RATIO}", ratio <= TARGET_RATIO, f"{ratio:.2f}")
    return 1 if args.strict and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
