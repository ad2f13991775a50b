"""`JobsCollector`: how the scheduled jobs of this server process fared.

    JobsCollector(jobs)   esup_scheduled_job_runs_total{task, outcome}

Per process: each replica counts its own runs (a run skipped because another
replica held the lock is `skipped`). Registered by `esup-server run` for the
level-advancing job and the alert jobs it schedules.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

from prometheus_client.core import CounterMetricFamily, Metric

from server.jobs import AdvanceJob

__all__ = ["OUTCOMES", "JobsCollector"]

#: The outcomes of a run: it ran, it skipped (another server ran it), it failed.
OUTCOMES: Final[tuple[str, ...]] = ("ran", "skipped", "failed")


class JobsCollector:
    """Counts of runs of each of `jobs`, labelled by the job's name (`task`)."""

    def __init__(self, jobs: Sequence[AdvanceJob]) -> None:
        self.jobs = list(jobs)

    def collect(self) -> Iterable[Metric]:
        runs = CounterMetricFamily(
            "esup_scheduled_job_runs",
            "Runs of the server's scheduled jobs in this process, by outcome.",
            labels=["task", "outcome"],
        )
        for job in self.jobs:
            counts = {"ran": job.runs, "skipped": job.skips, "failed": job.failures}
            for outcome in OUTCOMES:
                runs.add_metric([job.name, outcome], counts[outcome])
        yield runs
