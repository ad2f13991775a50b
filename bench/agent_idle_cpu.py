"""Benchmark of the agent's CPU while idle with 100,000 open cases, beside Debian's
prometheus-node-exporter measured over the same window.

Builds (or reuses, ``--state``) the state of bench/agent_memory.py: N open
cases of the reference city. Starts the agent-like process on it (live clocks'
thread, notifier, /metrics server) and `prometheus-node-exporter`, lets both
settle, then over a window of `--window` seconds with no new events scrapes
both every `--interval` seconds, as a Prometheus would, and reads each one's
user + system CPU time from /proc before and after. Prints CPU as a percentage
of one core for both and the ratio.

    python bench/agent_idle_cpu.py [--cases N] [--window SECONDS] [--interval SECONDS]
                                   [--state DIR] [--strict]

Exit status: 1 when the target is missed and ``--strict`` is given, else 0.
See docs/benchmarks.md, "Agent memory and idle CPU".
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from agentprocess import (
    build_state,
    cpu_seconds_of,
    scrape,
    start_agent,
    start_node_exporter,
    stop_agent,
    stop_process,
)
from rich.console import Console
from rich.table import Table
from scratch import positive_int, verdict

TARGET_PERCENT = 1.0  # of one core


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=positive_int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--window", type=positive_int, default=120)
    parser.add_argument("--interval", type=positive_int, default=15)
    parser.add_argument("--settle", type=positive_int, default=5)
    parser.add_argument("--state", type=Path, help="a folder holding a built state to reuse")
    parser.add_argument("--strict", action="store_true")
    args = parser.parse_args()
    console = Console()

    with tempfile.TemporaryDirectory(prefix="esup-bench-agent-") as scratch:
        state = args.state or Path(scratch)
        if not (state / "agent.db").exists():
            console.print(f"building {args.cases:,} open cases ...")
            build_state(state, args.cases, args.seed)
        exporter, exporter_port = start_node_exporter()
        agent, report = start_agent(state)
        try:
            scrape(report["port"])
            scrape(exporter_port)
            time.sleep(args.settle)
            agent_start = cpu_seconds_of(agent.pid)
            exporter_start = cpu_seconds_of(exporter.pid)
            started = time.monotonic()
            scrapes = 0
            while (elapsed := time.monotonic() - started) < args.window:
                time.sleep(min(args.interval, args.window - elapsed))
                if time.monotonic() - started < args.window:
                    scrape(report["port"])
                    scrape(exporter_port)
                    scrapes += 1
            window = time.monotonic() - started
            agent_cpu = cpu_seconds_of(agent.pid) - agent_start
            exporter_cpu = cpu_seconds_of(exporter.pid) - exporter_start
        finally:
            stop_agent(agent)
            stop_process(exporter)

    agent_pct = 100 * agent_cpu / window
    exporter_pct = 100 * exporter_cpu / window
    table = Table(
        title=f"CPU over {window:.0f} s, {report['open_cases']:,} open cases, no new events,"
        f" {scrapes} scrapes each"
    )
    table.add_column("process")
    table.add_column("CPU seconds", justify="right")
    table.add_column("% of one core", justify="right")
    table.add_row("esup agent", f"{agent_cpu:.2f}", f"{agent_pct:.3f}")
    table.add_row(
        "prometheus-node-exporter (baseline)", f"{exporter_cpu:.2f}", f"{exporter_pct:.3f}"
    )
    console.print(table)
    if exporter_cpu > 0:
        print(f"ratio agent / node exporter: {agent_cpu / exporter_cpu:.2f}")
    ok = verdict(
        f"idle CPU <= {TARGET_PERCENT}% of one core",
        agent_pct <= TARGET_PERCENT,
        f"{agent_pct:.3f}%",
    )
    return 1 if args.strict and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
