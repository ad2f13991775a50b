"""`esup demo` as a user runs it: a real subprocess starting a real server and agents.

The small runs (scale 0.02, about 20 s each) check what the demo printed
against the server's own API while it is still running (`--keep`), against
an independent simulation of the same seed, and that the processes are gone
afterwards — stopped by the demo itself, or, after `--keep`, by the `kill`
line it printed. The full-size run (about a minute on two shared cores) runs
when ESUP_DEMO_FULL=1 and checks 22,746 / 6,630 / 28,260 = 96.2% as printed.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import openpyxl
import psutil
import pytest

from casework.configfiles import load_config
from esup.demo import SUMMARY
from esup.simulation import simulate
from esup.simulator import YearShape

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config"
YEAR = ("2025-01-01", "2026-01-01")


def esup_command() -> list[str]:
    script = Path(sys.executable).parent / "esup"
    return [str(script)] if script.exists() else [sys.executable, "-m", "esup.cli"]


def run_demo(folder: Path, *args: str, timeout: float = 600) -> tuple[str, dict[str, Any]]:
    done = subprocess.run(
        [*esup_command(), "demo", "--dir", str(folder), "--config", str(CONFIG), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=folder.parent,
    )
    assert done.returncode == 0, (
        f"esup demo failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    )
    summary = json.loads((folder / SUMMARY).read_text("utf-8"))
    return done.stdout, summary


def table_rows(output: str, title: str) -> dict[str, list[str]]:
    """The body rows of the printed table titled `title`, by their first cell."""
    lines = output.splitlines()
    start = next(n for n, line in enumerate(lines) if title in line)
    rows: dict[str, list[str]] = {}
    for line in lines[start + 4 :]:
        if not line.startswith("│"):
            break
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        rows[cells[0]] = cells
    return rows


def gone(pids: list[int], timeout: float) -> list[int]:
    """The pids still running (zombies count as gone) after waiting up to `timeout` s."""
    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    return [p.pid for p in alive if p.status() != psutil.STATUS_ZOMBIE]


def test_small_demo_prints_the_servers_figures_and_kill_stops_what_keep_left(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "demo"
    output, summary = run_demo(folder, "--scale", "0.02", "--seed", "5", "--keep")
    pids = [p["pid"] for p in summary["processes"]]
    try:
        assert summary["kept"] is True
        assert len(pids) == 1 + 6  # the server and one agent per drop folder
        base = summary["urls"]["api"].removesuffix("/api/v1/")
        with httpx.Client(base_url=base, timeout=30) as client:
            city = client.get("/api/v1/rates", params={"start": YEAR[0], "end": YEAR[1]}).json()
            by_department = {
                code: client.get(
                    "/api/v1/rates",
                    params={"start": YEAR[0], "end": YEAR[1], "department": code},
                ).json()
                for code in summary["figures"]["departments"]
            }
            scores = client.get("/api/v1/scores", params={"period": "2025"}).json()
            metrics = client.get("/metrics")
        # What the demo printed is what the server answers, city-wide ...
        assert summary["figures"]["all"] == city
        rate = city["completion_rate"]
        assert (
            f"{city['received']:,} received, {city['carried_over']:,} carried over, "
            f"{city['completed']:,} completed, completion rate {rate['value']:.1%}"
        ) in output
        printed_city = table_rows(output, "city-wide (GET /api/v1/rates)")
        (row,) = printed_city.values()
        assert row[:3] == [f"{city[k]:,}" for k in ("received", "carried_over", "completed")]
        # ... per department, every one of the 43 ...
        printed = table_rows(output, "Per department")
        assert set(printed) == set(by_department)
        assert len(printed) == 43
        for code, f in by_department.items():
            assert printed[code][2:5] == [
                f"{f[k]:,}" for k in ("received", "carried_over", "completed")
            ], code
            assert printed[code][-3:] == [
                f"{f[k]:,}" for k in ("warnings", "yellow_cards", "red_cards")
            ], code
        # ... and the scores: every department ranked, in the order the server ranks them.
        assert len(scores["departments"]) == 94
        printed_ranks = {}
        for title in ("政府部门", "党群部门", "驻市单位"):
            for cells in table_rows(output, f"Scores 2025: {title}").values():
                printed_ranks[cells[1]] = (int(cells[0]), cells[3])
        assert printed_ranks == {
            d["department"]: (d["rank"], f"{d['final']:.2f}") for d in scores["departments"]
        }
        assert any(d["flags"] for d in scores["departments"])
        assert metrics.status_code == 200
        assert "esup_ingest_events_total" in metrics.text
        # An independent simulation of the same seed and size expects the same figures.
        expected = simulate(load_config(CONFIG), seed=5, shape=YearShape.scaled(0.02))
        total = expected.figures.total
        assert {k: city[k] for k in total} == total
        for code, counts in expected.figures.departments.items():
            assert {k: by_department[code][k] for k in counts} == counts, code
        assert summary["agreement"] == {"agrees": True, "differences": []}
        workbook = openpyxl.load_workbook(summary["feed"])
        assert len(workbook.sheetnames) >= 3
        # A second demo in the same directory refuses while these run, and touches nothing.
        again = subprocess.run(
            [*esup_command(), "demo", "--dir", str(folder), "--config", str(CONFIG)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert again.returncode == 2
        assert "still running; stop them first: kill" in again.stderr
        assert json.loads((folder / SUMMARY).read_text("utf-8")) == summary
    finally:
        # Stop them the way the demo said to.
        line = next(x for x in output.splitlines() if x.strip().startswith("kill "))
        assert sorted(int(p) for p in shlex.split(line)[1:]) == sorted(pids)
        subprocess.run(shlex.split(line), check=False)
        assert gone(pids, timeout=40) == []


def test_small_demo_stops_its_processes_and_refuses_a_foreign_directory(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    output, summary = run_demo(folder, "--scale", "0.01", "--seed", "2")
    assert summary["kept"] is False
    assert summary["complete"] is True
    assert "agree with the simulator's own count" in output
    assert "kill " not in output
    pids = [p["pid"] for p in summary["processes"]]
    assert len(pids) == 7
    assert gone(pids, timeout=0) == []
    with pytest.raises(httpx.TransportError):
        httpx.get(summary["urls"]["metrics"], timeout=2)

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    done = subprocess.run(
        [*esup_command(), "demo", "--dir", str(foreign), "--config", str(CONFIG)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "not a demo directory" in done.stderr
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_a_demo_ended_by_sigterm_stops_what_it_started(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    demo = subprocess.Popen(
        [*esup_command(), "demo", "--dir", str(folder), "--config", str(CONFIG),
         "--scale", "0.05", "--seed", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (folder / SUMMARY).exists():
            assert demo.poll() is None, demo.communicate()[0]
            assert time.monotonic() < deadline, "the demo started nothing in 120 s"
            time.sleep(0.2)
        started = json.loads((folder / SUMMARY).read_text("utf-8"))
        assert started["complete"] is False
        pids = [p["pid"] for p in started["processes"]]
        assert len(pids) == 7
        assert sorted(gone(pids, timeout=0)) == sorted(pids)  # all running
        demo.send_signal(signal.SIGTERM)
        output, _ = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
    assert demo.returncode == 130, output
    assert "interrupted; stopping what it started" in output
    assert gone(pids, timeout=0) == []


@pytest.mark.skipif(
    os.environ.get("ESUP_DEMO_FULL") != "1",
    reason="the full-size demo takes about a minute: set ESUP_DEMO_FULL=1",
)
def test_full_demo_prints_the_reference_year(tmp_path: Path) -> None:
    output, summary = run_demo(tmp_path / "demo")
    assert "22,746 received, 6,630 carried over, 28,260 completed, completion rate 96.2%" in output
    city = summary["figures"]["all"]
    assert (city["received"], city["carried_over"], city["completed"]) == (22746, 6630, 28260)
    assert (city["completion_rate"]["numerator"], city["completion_rate"]["denominator"]) == (
        28260,
        29376,
    )
    assert re.search(r"│\s+96\.2% \(28,260 / 29,376\)\s+│", output)
    print(f"full-size demo: {summary['seconds']}")
