"""The agent watching itself: memory, CPU, open files, disk, sources, workflow process.

Everything here is read when Prometheus scrapes (agent.metrics), never polled:
an idle agent stays idle. Outside dependencies are constructor arguments so
tests hand in fakes: a psutil-like process, the clock, the disk-usage
function, and the process look-ups.

A source is *stale* when no event came for `stale_after_minutes` of working
time: only the working hours (`work_start`..`work_end`, local) of working days
(the deployment's `WorkCalendar`, holidays and make-up days included) count,
so a quiet weekend or Spring Festival does not raise an alarm, while a
Monday morning without events does. A source that never produced an event
counts from the agent's start.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta
from datetime import time as clocktime
from pathlib import Path
from typing import Annotated, Any, Protocol
from zoneinfo import ZoneInfo

import psutil
from pydantic import BaseModel, ConfigDict, Field, model_validator

from casework.calendar import WorkCalendar

__all__ = ["MonitorSettings", "SelfMonitor"]

log = logging.getLogger(__name__)


class MonitorSettings(BaseModel):
    """What the agent watches besides itself."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Working time without an event after which a source is stale, in minutes.
    stale_after_minutes: Annotated[float, Field(gt=0)] = 120.0
    #: Working hours, local time of the deployment.
    work_start: clocktime = clocktime(8, 30)
    work_end: clocktime = clocktime(17, 30)
    #: The workflow system's process, by name (as `ps -o comm` shows it) or pidfile.
    workflow_process_name: str | None = None
    workflow_pidfile: Path | None = None

    @model_validator(mode="after")
    def _hours_ordered(self) -> MonitorSettings:
        if self.work_end <= self.work_start:
            raise ValueError(
                f"work_end {self.work_end} is not after work_start {self.work_start}; "
                "give the working hours of one day, e.g. 08:30 and 17:30"
            )
        return self


class ProcessLike(Protocol):
    """The part of `psutil.Process` read here."""

    def memory_info(self) -> Any: ...
    def cpu_times(self) -> Any: ...
    def num_fds(self) -> int: ...


class SelfMonitor:
    """Reads the agent's own health. `state_dir` is the folder of the state database."""

    def __init__(
        self,
        settings: MonitorSettings,
        state_dir: Path,
        calendar: WorkCalendar,
        tz: ZoneInfo | str = "Asia/Shanghai",
        *,
        process: ProcessLike | None = None,
        now: Callable[[], float] = time.time,
        disk_free: Callable[[Path], int] | None = None,
        process_names: Callable[[], Iterable[str]] | None = None,
        pid_exists: Callable[[int], bool] = psutil.pid_exists,
    ) -> None:
        self.settings = settings
        self.state_dir = state_dir
        self.calendar = calendar
        self.tz = ZoneInfo(tz) if isinstance(tz, str) else tz
        self._process = process if process is not None else psutil.Process()
        self._now = now
        self._disk_free = disk_free or (lambda path: int(psutil.disk_usage(str(path)).free))
        self._process_names = process_names or _process_names
        self._pid_exists = pid_exists
        self.started_at = now()

    # -- the process ------------------------------------------------------------------------

    def resident_memory_bytes(self) -> int:
        return int(self._process.memory_info().rss)

    def cpu_seconds(self) -> float:
        """User plus system CPU time of the agent, in seconds."""
        times = self._process.cpu_times()
        return float(times.user + times.system)

    def open_files(self) -> int:
        """Open file descriptors (files, sockets, pipes) of the agent."""
        return int(self._process.num_fds())

    def state_disk_free_bytes(self) -> int:
        """Free bytes on the file system of the state folder."""
        return self._disk_free(self.state_dir)

    # -- the workflow system ------------------------------------------------------------------

    def workflow_process_up(self) -> bool | None:
        """Whether the workflow system's process runs; None when none is configured."""
        name = self.settings.workflow_process_name
        pidfile = self.settings.workflow_pidfile
        if pidfile is not None:
            try:
                pid = int(pidfile.read_text(encoding="ascii").strip())
            except (OSError, ValueError) as exc:
                log.debug("Pidfile %s gives no process id: %s", pidfile, exc)
                return False
            return self._pid_exists(pid)
        if name is not None:
            return any(n == name for n in self._process_names())
        return None

    # -- sources ------------------------------------------------------------------------------

    def source_stale(self, last_event_at: float | None) -> bool:
        """Whether a source whose last event came at `last_event_at` (POSIX seconds, None
        for never) has been silent for the configured working time."""
        since = self.started_at if last_event_at is None else max(last_event_at, self.started_at)
        limit = self.settings.stale_after_minutes * 60.0
        return self.working_seconds(since, self._now(), limit) >= limit

    def working_seconds(self, start: float, end: float, limit: float) -> float:
        """Seconds of working hours in [start, end), counted back from `end` and no further
        than `limit` (enough to tell stale from not)."""
        if end <= start:
            return 0.0
        first = datetime.fromtimestamp(start, self.tz).date()
        day = datetime.fromtimestamp(end, self.tz).date()
        total = 0.0
        while day >= first and total < limit:
            if self._working_day(day):
                open_ = datetime.combine(day, self.settings.work_start, self.tz).timestamp()
                close = datetime.combine(day, self.settings.work_end, self.tz).timestamp()
                lo, hi = max(open_, start), min(close, end)
                if hi > lo:
                    total += hi - lo
            day -= timedelta(days=1)
        return total

    def _working_day(self, day: date) -> bool:
        try:
            return self.calendar.is_working_day(day)
        except (ValueError, IndexError):  # outside the calendar's window: Monday to Friday
            return day.weekday() < 5


def _process_names() -> Iterable[str]:
    for proc in psutil.process_iter(["name"]):
        name = proc.info.get("name")
        if name:
            yield str(name)
