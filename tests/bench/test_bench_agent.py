"""The agent benchmarks' processes, small: the built state holds every case, and the
running process tracks them all and serves them on /metrics. Nothing here is timed."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
from scriptload import load_script


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_script("bench/agentprocess.py", "esup_bench_agentprocess")


def test_the_built_state_is_tracked_and_served(bench: ModuleType, tmp_path: Path) -> None:
    built = bench.build_state(tmp_path, 300, 5)
    assert built["open_cases"] == 300
    assert sum(built["levels"].values()) == 300
    assert {"normal", "yellow", "red"} <= set(built["levels"])
    agent, report = bench.start_agent(tmp_path)
    try:
        assert report["open_cases"] == 300
        assert report["steps"][0][0] == "interpreter"
        assert bench.scrape(report["port"]) > 0
        assert bench.rss_of(agent.pid) > 0
        assert bench.cpu_seconds_of(agent.pid) > 0
        assert bench.rss_parts_of(agent.pid)["RssAnon"] > 0
    finally:
        bench.stop_agent(agent)
    assert agent.returncode == 0


def test_the_real_agent_runs_on_the_built_state(bench: ModuleType, tmp_path: Path) -> None:
    bench.build_state(tmp_path, 200, 7)
    agent, port = bench.start_real_agent(tmp_path, 200, timeout=60)
    try:
        assert bench.open_cases_served(port) == 200
        assert bench.rss_of(agent.pid) > 0
    finally:
        bench.stop_agent(agent)
    assert agent.returncode == 0
