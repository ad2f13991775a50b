"""`esup demo`: the reference city's year, end to end, on this machine, in one command.

    esup demo [--dir var/demo] [--seed 1] [--scale 1] [--keep] [--config config]

1. Simulates the year (`esup.simulation.simulate`).
2. Starts a real `esup-server` on SQLite at a free loopback port and one real
   `esup-agent` per drop folder of the simulation, each with its own token
   limited to its departments (`esup.demoprocs`).
3. Writes the simulated files into the drop folders day by day, as the
   workflow systems would, with a progress bar of events written, stored on
   the server and cases projected; waits until the server has stored and
   projected everything (`esup.demowatch`).
4. Posts the evaluation office's inputs for all departments with an operator
   token (`esup.demoinputs`).
5. Reads the year's figures and the scores back from the server's API, checks
   them against the simulator's own count, prints them (`esup.demoreport`),
   saves the XLSX scoring feed and writes ``demo.json`` (format
   ``esup.demo/1``: what was printed, the processes, URLs and timings).
6. Stops the processes (SIGTERM, wait), or with `--keep` leaves them running
   and prints how to stop them.

Exit status: 0 when the server's figures agree with the simulator's, 1 when
they do not or a process failed, 2 for a bad argument or configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import IO, Any, Final

import httpx
import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from casework.configfiles import load_config
from casework.errors import ConfigErrors, EsupError
from esup.demoinputs import KINDS_IN_ORDER, evaluation_inputs
from esup.demoprocs import (
    DemoError,
    Service,
    create_operator,
    create_token,
    start_agent,
    start_server,
    stop_all,
)
from esup.demoreport import disagreements, print_report, read_figures
from esup.demowatch import Counts, Watcher, wait_settled
from esup.dropfolders import write_files
from esup.simulation import Simulation, simulate
from esup.simulator import YearShape

__all__ = ["FORMAT", "MARKER", "SUMMARY", "register", "run"]

FORMAT: Final = "esup.demo/1"
#: A file that marks a directory as the demo's own, so it may be emptied.
MARKER: Final = ".esup-demo"
SUMMARY: Final = "demo.json"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        help="run the reference city's year through a real server and agents",
        description="Start a real esup-server on SQLite and one esup-agent per drop folder on "
        "loopback, feed them a simulated year of the reference city's case events, add the "
        "evaluation office's inputs, and print the year's figures and the scores as the "
        "server computes them.",
    )
    p.add_argument("--dir", type=Path, default=Path("var/demo"), metavar="DIR",
                   help="working directory, emptied first (default var/demo)")  # fmt: skip
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--scale", type=float, default=1.0,
                   help="size of the year, 1 = the reference city (default 1)")  # fmt: skip
    p.add_argument("--config", type=Path, default=Path("config"), help="configuration directory")
    p.add_argument("--keep", action="store_true",
                   help="leave the server and agents running at the end")  # fmt: skip
    p.add_argument("--timeout", type=float, default=600,
                   help="seconds to wait for the server to catch up (default 600)")  # fmt: skip
    p.set_defaults(func=run)


def prepare_dir(folder: Path) -> None:
    """Empty `folder` for a new run: it must not exist, be empty, or be an earlier demo's
    whose processes are gone."""
    if folder.exists() and any(folder.iterdir()):
        if not (folder / MARKER).exists():
            raise DemoError(f"{folder} is not empty and not a demo directory; choose --dir")
        alive = [pid for pid in _kept_pids(folder) if _alive(pid)]
        if alive:
            pids = " ".join(map(str, alive))
            raise DemoError(
                f"the demo's processes in {folder} are still running; stop them first: kill {pids}"
            )
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).write_text("esup demo working directory; emptied by the next run\n")


def _kept_pids(folder: Path) -> list[int]:
    try:
        summary = json.loads((folder / SUMMARY).read_text("utf-8"))
    except (OSError, ValueError):
        return []
    return [p["pid"] for p in summary.get("processes", [])]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run(args: argparse.Namespace, *, stdout: IO[str] | None = None) -> int:
    console = Console(file=stdout or sys.stdout, highlight=False)
    if not console.is_terminal:
        console.width = 160  # a log or a pipe: wide enough for the tables
    started = time.monotonic()
    try:
        if args.scale <= 0:
            raise DemoError(f"--scale must be above 0 (got {args.scale})")
        deployment = load_config(args.config)
        # The processes run in folders of their own: every path they get is absolute.
        args.dir, args.config = args.dir.absolute(), args.config.absolute()
        prepare_dir(args.dir)
        with console.status("Simulating the year…"):
            sim = simulate(deployment, seed=args.seed, shape=YearShape.scaled(args.scale))
    except (ConfigErrors, EsupError, DemoError, OSError) as exc:
        print(f"esup demo: {exc}", file=sys.stderr)
        return 2
    services: list[Service] = []
    keep = False
    # The processes run in sessions of their own: whatever ends the demo, it stops them.
    # SIGTERM and SIGHUP end it as Ctrl-C does (SIGINT too, even if it came in ignored).
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupted)
    try:
        code, keep = _run(args, console, deployment, sim, services, started)
        return code
    except KeyboardInterrupt:
        console.print("[yellow]esup demo: interrupted; stopping what it started[/yellow]")
        return 130
    except (DemoError, TimeoutError, httpx.HTTPError, OSError) as exc:
        console.print(f"[red]esup demo: {exc}[/red]")
        for service in services:
            console.print(f"  {service.name}: log {service.log}")
        return 1
    finally:
        if not keep:
            with console.status("Stopping the agents and the server…"):
                problems = stop_all(services[1:]) + stop_all(services[:1])
            for problem in problems:
                console.print(f"[yellow]{problem}[/yellow]")


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _run(
    args: argparse.Namespace,
    console: Console,
    deployment: Any,
    sim: Simulation,
    services: list[Service],
    started: float,
) -> tuple[int, bool]:
    folder: Path = args.dir
    summary = sim.summary()
    timings: dict[str, float] = {"simulate": time.monotonic() - started}
    with console.status("Starting the server and the agents…"):
        server, url = start_server(folder / "server", args.config)
        services.append(server)
        agents = folder / "agents"
        agents.mkdir()
        # Each token is an `esup-server` command of its own, about a second of Python
        # start-up: two at a time on two cores, each agent started once its token is there.
        with ThreadPoolExecutor(max_workers=2) as pool:
            office = pool.submit(create_operator, server.config, "考评办 (demo)")
            tokens = {
                group: pool.submit(
                    create_token, server.config, args.config, f"agent-{group}", codes
                )
                for group, codes in sim.groups.items()
            }
            for group, codes in sim.groups.items():
                token = tokens[group].result()
                services.append(start_agent(agents, f"agent-{group}", codes, url, token,
                                            folder / "drop" / group))  # fmt: skip
            office_token = office.result()
    timings["start"] = time.monotonic() - started
    # Written now so the processes can be found should the demo itself be killed;
    # rewritten whole at the end.
    _write_summary(folder / SUMMARY, {"format": FORMAT, "complete": False, "kept": False,
                                      "processes": _processes(services)})  # fmt: skip

    def alive() -> None:
        for service in services:
            if not service.running():
                raise DemoError(f"{service.name} exited; its log ({service.log}):\n"
                                f"{service.tail()}")  # fmt: skip

    year = (date(sim.year, 1, 1), date(sim.year + 1, 1, 1))
    ingest = summary["ingest"]
    expected = Counts(
        stored=ingest["accepted"],
        quarantined=sum(1 for m in summary["malformed"] if m["rejected_by"] == "ingest"),
        projected=summary["cases"]["valid"] + summary["cases"]["invalid"],
    )
    watcher = Watcher(url, date(sim.year - 1, 1, 1), date(sim.year + 2, 1, 1)).start()
    client = httpx.Client(base_url=url, timeout=60)
    try:
        city = _feed(console, sim, folder / "drop", watcher, expected, summary["lines"],
                     lambda: wait_settled(client, watcher, expected, year,
                                          timeout=args.timeout, alive=alive))  # fmt: skip
        timings["feed"] = time.monotonic() - started
        with console.status("Posting the evaluation office's inputs…"):
            posted = _post_inputs(client, office_token, deployment, sim.year, args.seed)
        with console.status("Reading the figures and scores back from the server…"):
            supervised = [d.code for d in deployment.supervised_departments()]
            figures = read_figures(client, year[0], year[1], supervised)
            scores = _get_json(client, "/api/v1/scores", period=str(sim.year), evidence="false")
            xlsx = folder / f"scores-{sim.year}.xlsx"
            response = client.get("/api/v1/scores.xlsx", params={"period": str(sim.year)})
            response.raise_for_status()
            xlsx.write_bytes(response.content)
        timings["report"] = time.monotonic() - started
    finally:
        watcher.stop()
        client.close()
    differences = disagreements(figures, sim.figures.to_json())
    if figures["all"] != city:
        differences.insert(0, "the year's city-wide rates changed after the server settled")
    report: dict[str, Any] = {
        "format": FORMAT,
        "complete": True,
        "seed": args.seed,
        "scale": args.scale,
        "year": sim.year,
        "directory": str(folder.resolve()),
        "department_names": {d.code: d.name for d in deployment.departments},
        "figures": figures,
        "expected": summary["figures"],
        "agreement": {"agrees": not differences, "differences": differences},
        "ingest": {
            "expected": ingest,
            "stored": watcher.latest.stored,
            "quarantined": watcher.latest.quarantined,
        },
        "inputs": posted,
        "scores": scores,
        "feed": str(xlsx.resolve()),
        "urls": {
            "api": f"{url}/api/v1/",
            "openapi": f"{url}/openapi.json",
            "docs": f"{url}/docs",
            "metrics": f"{url}/metrics",
        },
        "processes": _processes(services),
        "kept": bool(args.keep),
        "seconds": {k: round(v, 1) for k, v in timings.items()},
    }
    print_report(console, report)
    _print_footer(console, report, summary, differences)
    report["seconds"]["total"] = round(time.monotonic() - started, 1)
    _write_summary(folder / SUMMARY, report)
    console.print(
        f"Done in {report['seconds']['total']:.1f} s (simulate {timings['simulate']:.1f} s, "
        f"start {timings['start'] - timings['simulate']:.1f} s, feed and catch up "
        f"{timings['feed'] - timings['start']:.1f} s). Summary: {folder / SUMMARY}"
    )
    if args.keep:
        pids = " ".join(str(s.pid) for s in services)
        console.print(f"The server and {len(services) - 1} agents keep running "
                      f"(logs in {folder}). Stop them with:\n    kill {pids}")  # fmt: skip
    return (0 if not differences else 1), bool(args.keep)


def _feed(
    console: Console,
    sim: Simulation,
    drops: Path,
    watcher: Watcher,
    expected: Counts,
    lines: int,
    settle: Any,
) -> dict[str, Any]:
    """Write the files day by day with a progress bar, then wait for the server to settle."""
    columns = (TextColumn("{task.description:<24}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=console) as progress:
        written = progress.add_task("events written", total=lines)
        stored = progress.add_task("events stored (server)", total=expected.stored)
        projected = progress.add_task("cases projected", total=expected.projected)

        def show() -> None:
            now = watcher.latest
            progress.update(stored, completed=now.stored)
            progress.update(projected, completed=now.projected)

        for file in write_files(sim.files, drops):
            progress.update(written, advance=file.lines,
                            description=f"{file.file.day:%Y-%m-%d} written")  # fmt: skip
            show()
        progress.update(written, description="events written")
        result: dict[str, Any] = {}

        def wait() -> None:
            try:
                result["rates"] = settle()
            except BaseException as exc:  # handed to the caller below
                result["error"] = exc

        waiter = threading.Thread(target=wait, daemon=True)
        waiter.start()
        while waiter.is_alive():
            show()
            waiter.join(timeout=0.25)
        show()
    if "error" in result:
        raise result["error"]
    rates: dict[str, Any] = result["rates"]
    return rates


def _get_json(client: httpx.Client, path: str, **params: str) -> Any:
    response = client.get(path, params=params)
    response.raise_for_status()
    return response.json()


def _post_inputs(
    client: httpx.Client, token: str, deployment: Any, year: int, seed: int
) -> dict[str, int]:
    """Post every kind of evaluation input with an office operator `token`; rows per kind."""
    headers = {"Authorization": f"Bearer {token}"}
    posted = dict.fromkeys(KINDS_IN_ORDER, 0)
    # The year before too, so growth and the second-year accountability flag mean something.
    for period in (year - 1, year):
        for kind, rows in evaluation_inputs(deployment, period, seed).items():
            response = client.post(f"/api/v1/scores/inputs/{kind}", json=rows, headers=headers)
            if response.status_code != 200:
                raise DemoError(f"posting {kind} answered {response.status_code}: {response.text}")
            answer = response.json()
            if answer["rejected"]:
                raise DemoError(f"the server rejected {answer['rejected']} {kind} rows: "
                                f"{answer['errors'][:3]}")  # fmt: skip
            posted[kind] += answer["stored"]
    return posted


def _print_footer(
    console: Console, report: dict[str, Any], summary: dict[str, Any], differences: list[str]
) -> None:
    city = report["figures"]["all"]
    rate = city["completion_rate"]
    if not differences:
        console.print(
            f"[green]The server's figures agree with the simulator's own count[/green]: "
            f"{city['received']:,} received, {city['carried_over']:,} carried over, "
            f"{city['completed']:,} completed, completion rate "
            f"{rate['value']:.1%} — for the city and each of the "
            f"{len(report['figures']['departments'])} supervised departments."
        )
    else:
        console.print(f"[red]The server's figures differ from the simulator's "
                      f"in {len(differences)} places:[/red]")  # fmt: skip
        for line in differences[:20]:
            console.print(f"  {line}")
    ingest = report["ingest"]
    console.print(
        f"Ingest: {ingest['stored']:,} events stored, {ingest['quarantined']} quarantined "
        f"(expected {ingest['expected']['accepted']:,} and "
        f"{sum(1 for m in summary['malformed'] if m['rejected_by'] == 'ingest')}); "
        f"{ingest['expected']['duplicate']} duplicates answered as such; "
        f"{sum(1 for m in summary['malformed'] if m['rejected_by'] == 'wire')} malformed lines "
        "kept in the agents' rejected/ folders."
    )
    urls = report["urls"]
    console.print(f"Scoring feed (XLSX): {report['feed']}")
    console.print(f"API: {urls['api']}  (rates: {urls['api']}rates?start={report['year']}-01-01"
                  f"&end={report['year'] + 1}-01-01, OpenAPI: {urls['openapi']})")  # fmt: skip
    console.print(f"Metrics: {urls['metrics']}")
    for agent in report["processes"]:
        if "metrics" in agent:
            console.print(f"  {agent['name']}: {agent['metrics']}")


def _processes(services: list[Service]) -> list[dict[str, Any]]:
    return [
        {"name": s.name, "pid": s.pid, "config": str(s.config), "log": str(s.log), **_http(s)}
        for s in services
    ]


def _write_summary(path: Path, report: dict[str, Any]) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", "utf-8")
    os.replace(temp, path)


def _http(service: Service) -> dict[str, str]:
    """An agent's /metrics URL, from the `http` section of its config."""
    config = yaml.safe_load(service.config.read_text("utf-8"))
    http = config.get("http") if isinstance(config, dict) else None
    if not isinstance(http, dict) or "port" not in http:
        return {}
    return {"metrics": f"http://{http.get('host', '127.0.0.1')}:{http['port']}/metrics"}
