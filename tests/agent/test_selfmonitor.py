"""Self-monitoring: the process's figures, the workflow process, and sources gone quiet
during working hours (weekends and holidays do not count; make-up days do)."""

from __future__ import annotations

from datetime import date, time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from clockfakes import FakeClock, clock, local

from agent.selfmonitor import MonitorSettings, SelfMonitor


class FakeProcess:
    def memory_info(self) -> Any:
        return SimpleNamespace(rss=25_000_000)

    def cpu_times(self) -> Any:
        return SimpleNamespace(user=1.25, system=0.5)

    def num_fds(self) -> int:
        return 9


def monitor(now: FakeClock, tmp_path: Path, **settings: Any) -> SelfMonitor:
    return SelfMonitor(
        MonitorSettings.model_validate(settings),
        tmp_path,
        clock().calendar,
        process=FakeProcess(),
        now=now,
        disk_free=lambda path: 123 if path == tmp_path else -1,
        process_names=lambda: ["sshd", "java", "bash"],
        pid_exists=lambda pid: pid == 4242,
    )


def test_the_process_figures_come_from_the_process(tmp_path: Path) -> None:
    m = monitor(FakeClock("2024-03-11 09:00"), tmp_path)
    assert m.resident_memory_bytes() == 25_000_000
    assert m.cpu_seconds() == 1.75
    assert m.open_files() == 9
    assert m.state_disk_free_bytes() == 123


def test_the_real_process_can_be_read(tmp_path: Path) -> None:
    m = SelfMonitor(MonitorSettings(), tmp_path, clock().calendar)
    assert m.resident_memory_bytes() > 1_000_000
    assert m.cpu_seconds() > 0
    assert m.open_files() > 0
    assert m.state_disk_free_bytes() > 0


def test_a_weekend_does_not_make_a_source_stale(tmp_path: Path) -> None:
    now = FakeClock("2024-03-01 08:00")
    m = monitor(now, tmp_path, stale_after_minutes=120)
    friday = local("2024-03-08 17:00").timestamp()
    now.set("2024-03-11 09:00")  # 30 minutes on Friday, 30 on Monday
    assert not m.source_stale(friday)
    now.set("2024-03-11 09:59")
    assert not m.source_stale(friday)
    now.set("2024-03-11 10:00")
    assert m.source_stale(friday)


def test_the_spring_festival_does_not_count_but_its_make_up_day_does(tmp_path: Path) -> None:
    calendar = clock().calendar
    assert not calendar.is_working_day(date(2024, 2, 14))
    assert calendar.is_working_day(date(2024, 2, 18))  # a Sunday worked instead
    now = FakeClock("2024-02-01 08:00")
    m = monitor(now, tmp_path, stale_after_minutes=60)
    last = local("2024-02-09 17:00").timestamp()
    now.set("2024-02-17 23:00")
    assert not m.source_stale(last)  # 30 working minutes in eight days
    now.set("2024-02-18 09:00")
    assert m.source_stale(last)


def test_a_silent_source_counts_from_the_agents_start(tmp_path: Path) -> None:
    now = FakeClock("2024-03-11 08:00")
    m = monitor(now, tmp_path, stale_after_minutes=30)
    now.set("2024-03-11 08:59")
    assert not m.source_stale(None)
    now.set("2024-03-11 09:00")
    assert m.source_stale(None)
    # An event older than the start counts from the start too: the agent was not watching.
    assert not m.source_stale(local("2024-03-11 08:50").timestamp())


def test_the_workflow_process_by_pidfile_or_name(tmp_path: Path) -> None:
    now = FakeClock("2024-03-11 08:00")
    assert monitor(now, tmp_path).workflow_process_up() is None
    assert monitor(now, tmp_path, workflow_process_name="java").workflow_process_up() is True
    assert monitor(now, tmp_path, workflow_process_name="tomcat").workflow_process_up() is False
    pidfile = tmp_path / "wf.pid"
    by_pid = monitor(now, tmp_path, workflow_pidfile=pidfile)
    assert by_pid.workflow_process_up() is False  # no pidfile yet
    pidfile.write_text("4242\n")
    assert by_pid.workflow_process_up() is True
    pidfile.write_text("4243\n")
    assert by_pid.workflow_process_up() is False
    pidfile.write_text("not a pid")
    assert by_pid.workflow_process_up() is False


def test_working_hours_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="work_end"):
        MonitorSettings(work_start=time(18, 0), work_end=time(9, 0))
