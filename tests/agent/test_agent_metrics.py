"""The agent's metrics: every contracted name, built at scrape time from views of the
agent's parts, on its own registry; `promtool check metrics` finds nothing to say."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import prometheus_client
import pytest
from agentseries import AGENT_SERIES
from clockfakes import Events, FakeClock, feed, make_clocks
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agent.metrics import AgentCollector, agent_registry


class FakeOutbox:
    def __init__(self, paused: bool = False) -> None:
        self._paused = paused

    def depth(self) -> int:
        return 42

    def size_bytes(self) -> int:
        return 4200

    def cap_bytes(self) -> int:
        return 1 << 30

    def paused(self) -> bool:
        return self._paused

    def dead_letters(self) -> int:
        return 3


@dataclass
class FakeSource:
    name: str
    last_event_at: float | None
    events_read: int = 0
    events_rejected: int = 0


@dataclass
class FakeDelivery:
    counts: Mapping[str, int] = field(default_factory=dict)
    last_success_at: float | None = None


class FakeMonitor:
    def resident_memory_bytes(self) -> int:
        return 30_000_000

    def cpu_seconds(self) -> float:
        return 1.5

    def open_files(self) -> int:
        return 12

    def state_disk_free_bytes(self) -> int:
        return 10**10

    def workflow_process_up(self) -> bool | None:
        return False

    def source_stale(self, last_event_at: float | None) -> bool:
        return last_event_at is None


@dataclass
class FakeNotices:
    outcomes: Mapping[str, int] = field(default_factory=lambda: {"sent": 2, "failed": 1})

    def pending(self) -> int:
        return 4


def samples(exposition: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(exposition.decode()):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def full_collector(tmp_path: Path) -> AgentCollector:
    now = FakeClock("2024-03-13 09:00")
    path = tmp_path / "state.db"
    clocks = make_clocks(path, now)
    event = Events()
    feed(
        clocks,
        path,
        event("accepted", "2024-03-04 10:00"),
        event("accepted", "2024-03-12 10:00", "C2"),
        event("accepted", "2024-03-12 10:00", "C3", item="nope-1"),
    )
    clocks.process_due()
    sources = [
        FakeSource("drop", now() - 60, events_read=100, events_rejected=2),
        FakeSource("exchange", None),
    ]
    return AgentCollector(
        "agent-fgw",
        "0.1.0",
        departments=["fgw", "jyj"],
        outbox=FakeOutbox(paused=True),
        sources=lambda: sources,
        delivery=FakeDelivery(
            {"accepted": 90, "duplicate": 5, "rejected": 2, "failed_attempts": 7}, now() - 5
        ),
        clocks=clocks,
        monitor=FakeMonitor(),
        notices=FakeNotices(),
    )


def test_every_contracted_metric_is_exposed_with_its_value(tmp_path: Path) -> None:
    exposition = generate_latest(agent_registry(full_collector(tmp_path)))
    found = samples(exposition)
    names = {name for name, _ in found}
    assert [n for n in AGENT_SERIES if n not in names] == []
    assert found[("esup_agent_info", (("agent", "agent-fgw"), ("version", "0.1.0")))] == 1
    assert found[("esup_agent_backpressure", ())] == 1
    assert found[("esup_agent_outbox_events", ())] == 42
    assert found[("esup_agent_source_events_total", (("outcome", "rejected"), ("source", "drop")))]
    assert found[("esup_agent_source_stale", (("source", "exchange"),))] == 1
    assert found[("esup_agent_source_stale", (("source", "drop"),))] == 0
    assert (
        "esup_agent_source_last_event_timestamp_seconds",
        (("source", "exchange"),),
    ) not in found
    assert found[("esup_agent_delivered_events_total", (("outcome", "duplicate"),))] == 5
    assert found[("esup_agent_delivery_failures_total", ())] == 7
    assert found[("esup_agent_open_cases", (("department", "fgw"), ("level", "yellow")))] == 1
    assert found[("esup_agent_open_cases", (("department", "fgw"), ("level", "normal")))] == 1
    assert found[("esup_agent_open_cases", (("department", "jyj"), ("level", "red")))] == 0
    assert found[("esup_agent_flags_total", (("department", "fgw"), ("level", "yellow")))] == 1
    assert found[("esup_agent_flags_total", (("department", "fgw"), ("level", "red")))] == 0
    assert found[("esup_agent_unknown_items_total", (("department", "fgw"),))] == 1
    assert found[("esup_agent_workflow_process_up", ())] == 0
    assert found[("esup_agent_cpu_seconds_total", ())] == 1.5


def test_parts_left_out_leave_their_families_out() -> None:
    exposition = generate_latest(agent_registry(AgentCollector("a", "1")))
    assert {name for name, _ in samples(exposition)} == {"esup_agent_info"}


def test_the_global_registry_is_left_alone(tmp_path: Path) -> None:
    agent_registry(full_collector(tmp_path))
    assert b"esup_agent" not in generate_latest(prometheus_client.REGISTRY)


def test_promtool_finds_nothing_to_say(
    tmp_path: Path, require_service: Callable[[str, str], NoReturn]
) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        require_service("promtool", "not on PATH (Debian package prometheus)")
    exposition = generate_latest(agent_registry(full_collector(tmp_path)))
    result = subprocess.run(
        [promtool, "check", "metrics"], input=exposition, capture_output=True, timeout=60
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")


def test_promtool_would_notice_a_bad_name(
    require_service: Callable[[str, str], NoReturn],
) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        require_service("promtool", "not on PATH (Debian package prometheus)")
    bad = b"# HELP esup_agent_x_total x\n# TYPE esup_agent_x_total gauge\nesup_agent_x_total 1\n"
    result = subprocess.run([promtool, "check", "metrics"], input=bad, capture_output=True)
    assert result.stdout + result.stderr != b""


@pytest.mark.parametrize("paused", [False, True])
def test_backpressure_follows_the_outbox(paused: bool) -> None:
    collector = AgentCollector("a", "1", outbox=FakeOutbox(paused=paused))
    found = samples(generate_latest(agent_registry(collector)))
    assert found[("esup_agent_backpressure", ())] == int(paused)
