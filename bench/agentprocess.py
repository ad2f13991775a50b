"""What the agent benchmarks share: an agent-like process tracking N open cases, and
Debian's prometheus-node-exporter as the baseline beside it.

Run as a script it is that process (the benchmarks start it; nobody else needs to):

    python bench/agentprocess.py build --state DIR [--cases N] [--seed S]
        fills DIR/agent.db with N open cases of the reference city through the
        live clocks' event sink, evaluates them all, drains the notices, prints
        one JSON line and exits;
    python bench/agentprocess.py run --state DIR
        imports what a running agent imports, opens the live clocks on that
        state (a restart), starts their thread, the notifier and the /metrics
        server on a free port, prints one JSON line (``port`` and the resident
        memory after each step) and waits until its stdin closes.

The `run` process imports only what an agent imports, so its memory is the
agent's; the benchmark's own imports (rich, the parent's bookkeeping) stay in
the parent.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parents[1]
CONFIG: Final = ROOT / "config"


def _rss() -> int:
    with open(f"/proc/{os.getpid()}/statm", encoding="ascii") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def build(state: Path, cases: int, seed: int) -> dict[str, Any]:
    """Fill the state database with `cases` open cases; evaluate them; drain notices."""
    import logging
    import random
    import sqlite3
    from datetime import datetime, timedelta

    from agent.liveclocks import LiveClocks, connect_state
    from agent.notify import Notifier, NotifySettings
    from casework.configfiles import load_config
    from casework.events import CaseEvent

    logging.basicConfig(level=logging.ERROR)
    rng = random.Random(seed)
    deployment = load_config(CONFIG)
    tz = deployment.settings.zone
    catalog = [
        (d.code, [code for i in deployment.items_of(d.code) for code in _codes(i)])
        for d in deployment.supervised_departments()
    ]
    catalog = [(d, items) for d, items in catalog if items]
    path = state / "agent.db"
    clocks = LiveClocks(deployment, lambda: connect_state(path))
    now = datetime.now(tz)
    started = time.perf_counter()
    conn = sqlite3.connect(path)
    batch: list[CaseEvent] = []
    n = 0
    for i in range(cases):
        department, items = rng.choice(catalog)
        item = rng.choice(items)
        at = now - timedelta(seconds=rng.uniform(3600, 40 * 86400))
        case_id = f"B-{i:07d}"
        events = [
            CaseEvent(f"{case_id}-a", case_id, department, item, "accepted", at),
        ]
        for k in range(rng.choice((0, 1, 1, 2))):
            step_at = at + timedelta(seconds=rng.uniform(60, (now - at).total_seconds()))
            events.append(
                CaseEvent(
                    f"{case_id}-s{k}",
                    case_id,
                    department,
                    item,
                    "step",
                    min(step_at, now),
                    step=f"审查{k + 1}",
                    handler="张三",
                )
            )
        if rng.random() < 0.03:
            events.append(
                CaseEvent(
                    f"{case_id}-p",
                    case_id,
                    department,
                    item,
                    "suspended",
                    now - timedelta(seconds=rng.uniform(60, 3 * 86400)),
                    reason="expert_review",
                    days=rng.choice((5, 10, 20)),
                )
            )
        batch.extend(events)
        n += len(events)
        if len(batch) >= 2000:
            clocks.record(conn, batch)
            conn.commit()
            batch = []
    if batch:
        clocks.record(conn, batch)
        conn.commit()
    conn.close()
    recorded = time.perf_counter()
    clocks.process_due()
    evaluated = time.perf_counter()
    notifier = Notifier(NotifySettings(), lambda: connect_state(path))
    while notifier.deliver_due(limit=5000):
        pass
    return {
        "cases": cases,
        "events": n,
        "record_seconds": recorded - started,
        "evaluate_seconds": evaluated - recorded,
        "open_cases": sum(clocks.open_cases().values()),
        "levels": _levels(clocks.open_cases()),
        "flags": sum(clocks.flags_raised().values()),
        "rss_bytes": _rss(),
        "state_bytes": sum(p.stat().st_size for p in state.iterdir()),
    }


def _codes(item: Any) -> list[str]:
    return [item.code] + [sub.code for sub in item.sub_items]


def _levels(counts: dict[tuple[str, str], int]) -> dict[str, int]:
    levels: dict[str, int] = {}
    for (_, level), n in counts.items():
        levels[level] = levels.get(level, 0) + n
    return levels


def run(state: Path) -> None:
    """Be a running agent on `state` until stdin closes; report memory step by step."""
    steps: list[tuple[str, int]] = [("interpreter", _rss())]
    import pydantic  # noqa: F401

    import agent  # noqa: F401  (before httpx, as the agent's command does: no httpx CLI)

    steps.append(("+ pydantic", _rss()))
    import httpx  # noqa: F401

    steps.append(("+ httpx", _rss()))
    import prometheus_client  # noqa: F401

    steps.append(("+ prometheus_client", _rss()))
    import watchdog.events
    import watchdog.observers  # noqa: F401

    steps.append(("+ watchdog", _rss()))
    import psutil  # noqa: F401
    import yaml  # noqa: F401

    from casework import clock, configfiles, wire  # noqa: F401

    steps.append(("+ casework, psutil, PyYAML", _rss()))
    import logging
    import sqlite3  # noqa: F401

    from agent.catalogcache import CatalogCache, CatalogSettings
    from agent.httpserver import AgentHttpServer, HttpSettings
    from agent.liveclocks import LiveClocks, connect_state
    from agent.metrics import AgentCollector, agent_registry
    from agent.notify import Notifier, NotifySettings
    from agent.selfmonitor import MonitorSettings, SelfMonitor

    steps.append(("+ agent modules", _rss()))
    logging.basicConfig(level=logging.ERROR)
    deployment = CatalogCache(
        CatalogSettings(config_dir=CONFIG, cache_file=state / "catalog.json")
    ).load()
    clock_ = clock.Clock.for_deployment(deployment)
    steps.append(("+ deployment and calendar", _rss()))
    path = state / "agent.db"
    notifier = Notifier(NotifySettings(), lambda: connect_state(path))
    clocks = LiveClocks(deployment, lambda: connect_state(path), clock=clock_, notices=notifier)
    clocks.process_due()
    steps.append(("+ live clocks opened (restart)", _rss()))
    monitor = SelfMonitor(MonitorSettings(), state, clock_.calendar, deployment.settings.zone)
    collector = AgentCollector(
        "bench",
        "0",
        departments=[d.code for d in deployment.supervised_departments()],
        clocks=clocks,
        monitor=monitor,
        notices=notifier,
    )
    server = AgentHttpServer(HttpSettings(port=0), agent_registry(collector))
    server.start()
    clocks.start()
    notifier.start()
    steps.append(("+ threads and /metrics server started", _rss()))
    print(
        json.dumps(
            {
                "port": server.port,
                "pid": os.getpid(),
                "open_cases": sum(clocks.open_cases().values()),
                "steps": steps,
            }
        ),
        flush=True,
    )
    sys.stdin.read()  # until the parent closes it
    clocks.stop()
    notifier.stop()
    server.stop()


# -- the parent's side: start the processes, scrape them, read their figures ---------------


def build_state(state: Path, cases: int, seed: int) -> dict[str, Any]:
    """Run `build` in a child process; its JSON report."""
    import subprocess

    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "build",
            "--state",
            str(state),
            "--cases",
            str(cases),
            "--seed",
            str(seed),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    report: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return report


def start_agent(state: Path) -> tuple[Any, dict[str, Any]]:
    """Start `run` on `state`; (the Popen, its JSON report) once it serves /metrics."""
    import subprocess

    proc = subprocess.Popen(
        [sys.executable, __file__, "run", "--state", str(state)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError("the agent process ended before it was ready")
    return proc, json.loads(line)


def agent_command() -> list[str]:
    """`esup-agent` as installed beside this interpreter, else the module."""
    script = Path(sys.executable).parent / "esup-agent"
    return [str(script)] if script.exists() else [sys.executable, "-m", "agent.cli"]


def write_agent_config(state: Path, port: int) -> Path:
    """A config for a real `esup-agent run` on `state`: every supervised department of
    the reference city, the catalog from config/, a drop folder, /metrics on `port`,
    and a server that is not there (nothing is waiting to be delivered anyway)."""
    sys.path.insert(0, str(ROOT))
    from casework.configfiles import load_config

    departments = [d.code for d in load_config(CONFIG).supervised_departments()]
    (state / "drop").mkdir(exist_ok=True)
    path = state / "bench-agent.yaml"
    config = {
        "name": "bench",
        "departments": departments,
        "config_dir": str(CONFIG),
        "server": {"url": f"http://127.0.0.1:{free_port()}", "token": "bench"},
        "state_dir": str(state),
        "sources": [{"kind": "dropfolder", "name": "drop", "path": str(state / "drop")}],
        "http": {"host": "127.0.0.1", "port": port},
    }
    path.write_text(json.dumps(config), encoding="utf-8")  # JSON is YAML
    return path


def open_cases_served(port: int) -> int:
    """The sum of esup_agent_open_cases on the agent's /metrics."""
    from urllib.request import urlopen

    with urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as answer:
        text = answer.read().decode()
    return int(
        sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("esup_agent_open_cases{")
        )
    )


def start_real_agent(state: Path, cases: int, timeout: float = 300) -> tuple[Any, int]:
    """`esup-agent run` on `state` (built by `build`); (the Popen, its /metrics port)
    once it serves all `cases` open cases (or the timeout passed: the caller checks)."""
    import subprocess

    port = free_port()
    config = write_agent_config(state, port)
    log = (state / "bench-agent.log").open("ab")
    proc = subprocess.Popen(
        [*agent_command(), "run", "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=state,
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            if open_cases_served(port) >= cases:
                return proc, port
        except OSError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"esup-agent ended before it was ready; see {state}/bench-agent.log")
        if time.monotonic() > deadline:
            return proc, port
        time.sleep(0.2)


def stop_agent(proc: Any) -> None:
    """Stop `run` (stdin closed) or `esup-agent run` (SIGTERM)."""
    if proc.stdin is not None:
        proc.stdin.close()
    else:
        proc.terminate()
    try:
        proc.wait(30)
    except Exception:
        proc.kill()
        proc.wait()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_node_exporter() -> tuple[Any, int]:
    """Debian's prometheus-node-exporter on a free local port, once it answers."""
    import shutil
    import subprocess

    binary = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
    if binary is None:
        raise SystemExit("prometheus-node-exporter is not installed (Debian package of that name)")
    port = free_port()
    proc = subprocess.Popen(
        [binary, f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            scrape(port)
            return proc, port
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise
            time.sleep(0.2)


def stop_process(proc: Any) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except Exception:
        proc.kill()
        proc.wait()


def scrape(port: int) -> int:
    """GET /metrics as Prometheus would; the body's size."""
    from urllib.request import urlopen

    with urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as answer:
        return len(answer.read())


def rss_of(pid: int) -> int:
    with open(f"/proc/{pid}/statm", encoding="ascii") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rss_parts_of(pid: int) -> dict[str, int]:
    """RssAnon (heap, stacks), RssFile (mapped code and data files) and RssShmem, in bytes."""
    parts = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            name, _, value = line.partition(":")
            if name in ("RssAnon", "RssFile", "RssShmem"):
                parts[name] = int(value.split()[0]) * 1024
    return parts


def cpu_seconds_of(pid: int) -> float:
    """User plus system CPU seconds of a process, from /proc."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str]) -> int:
    mode, rest = argv[0], argv[1:]
    state = Path(rest[rest.index("--state") + 1])
    if mode == "build":
        cases = int(rest[rest.index("--cases") + 1]) if "--cases" in rest else 100_000
        seed = int(rest[rest.index("--seed") + 1]) if "--seed" in rest else 1
        print(json.dumps(build(state, cases, seed)), flush=True)
    else:
        run(state)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
