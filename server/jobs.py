"""The scheduled job that advances case levels as time passes, run once across servers.

    AdvanceJob(advance, interval=..., lock=..., hold=..., now=...)   one run per call
    AdvanceJob.for_engine(engine, advance, interval=...)              the lock for the database
    advisory_lock(engine, key)                                        PostgreSQL: skip if held
    no_lock()                                                         SQLite: always run
    start_scheduler(job) -> BackgroundScheduler                       every `interval`
    schedule(job, scheduler)                                          one more job, same rules

The same machinery runs other once-across-servers jobs (the per-case alerts):
each has its own `name` (log lines, scheduler id) and its own lock key.

Several server processes may share one PostgreSQL database behind a load
balancer; each runs the same scheduler, and each run of the job takes
``pg_try_advisory_xact_lock(ADVANCE_LOCK_KEY)`` in a transaction of its own.
The process that gets it advances the due cases; the others skip that run
(logged at debug). The lock goes with the transaction, so a process killed
mid-run holds nothing and the next run elsewhere proceeds.

Exactly once per interval. Every process fires at the same instants: whole
multiples of `interval` since `EPOCH` (UTC), its *slots*. Firings of one slot
in different processes are apart only by scheduling jitter, so the winner keeps
its transaction, and the lock, open until `hold` after the slot began; a
loser's attempt in the same slot finds the lock held and skips. `hold` is half
the interval, at most `MAX_HOLD`: a process late by more than that may run the
slot a second time, which is harmless (advancing is idempotent), merely wasted.

SQLite is one server process by design: no lock, no hold.

Each run logs ``advance: changed=N slot=S pid=P`` at info. A run that fails is
logged with its traceback and counted in `failures`; the scheduler's thread
never sees the exception, so the next run happens as planned.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Final

from apscheduler.schedulers.background import (  # type: ignore[import-untyped]
    BackgroundScheduler,
)
from apscheduler.triggers.interval import IntervalTrigger  # type: ignore[import-untyped]
from sqlalchemy import Engine, func, select

__all__ = [
    "ADVANCE_LOCK_KEY",
    "EPOCH",
    "MAX_HOLD",
    "AdvanceJob",
    "RunLock",
    "advisory_lock",
    "no_lock",
    "schedule",
    "start_scheduler",
]

logger = logging.getLogger(__name__)

#: The PostgreSQL advisory lock key of the level-advancing job: "esupadv1" read as a
#: big-endian signed 64-bit integer. Fixed forever: servers of different versions
#: sharing a database must agree on it.
ADVANCE_LOCK_KEY: Final = int.from_bytes(b"esupadv1", "big", signed=True)

#: Slots are counted from this instant (UTC): slot S begins at EPOCH + S × interval.
EPOCH: Final = datetime(2000, 1, 1, tzinfo=UTC)

#: The longest a run keeps the lock after its slot began (see the module docstring).
MAX_HOLD: Final = timedelta(seconds=5)

#: A context manager saying whether this process may run now (True) or must skip (False).
RunLock = Callable[[], AbstractContextManager[bool]]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@contextmanager
def no_lock() -> Iterator[bool]:
    """Always run: the lock of a database only one process uses (SQLite)."""
    yield True


def advisory_lock(engine: Engine, key: int = ADVANCE_LOCK_KEY) -> RunLock:
    """A `RunLock` taking ``pg_try_advisory_xact_lock(key)`` on `engine` (PostgreSQL).

    The context yields whether the lock was free; it is held, in a transaction
    of its own connection, until the context exits.
    """

    @contextmanager
    def lock() -> Iterator[bool]:
        with engine.connect() as connection, connection.begin():
            got: bool = connection.execute(select(func.pg_try_advisory_xact_lock(key))).scalar_one()
            yield got

    return lock


class AdvanceJob:
    """One run per call: `advance()` under `lock`, once per slot of `interval`.

    `advance` re-evaluates the due cases and returns how many changed
    (`CaseProjector.advance`). `lock` says whether this process may run (see
    `advisory_lock`, `no_lock`). After advancing, the run keeps the lock until
    `hold` after its slot began. `now` returns the current instant, aware.
    `runs`, `skips` and `failures` count the calls of each outcome.
    """

    def __init__(
        self,
        advance: Callable[[], int],
        *,
        interval: timedelta,
        lock: RunLock = no_lock,
        hold: timedelta = timedelta(0),
        now: Callable[[], datetime] = _utcnow,
        name: str = "advance",
    ) -> None:
        if interval <= timedelta(0):
            raise ValueError(f"interval must be positive, not {interval}")
        if hold < timedelta(0) or hold >= interval:
            raise ValueError(f"hold must be at least 0 and less than the interval, not {hold}")
        self.advance = advance
        self.interval = interval
        self.lock = lock
        self.hold = hold
        self.now = now
        self.name = name
        self.runs = 0
        self.skips = 0
        self.failures = 0
        self._stopping = threading.Event()

    @classmethod
    def for_engine(
        cls,
        engine: Engine,
        advance: Callable[[], int],
        *,
        interval: timedelta,
        now: Callable[[], datetime] = _utcnow,
    ) -> AdvanceJob:
        """The job for the database of `engine`: the advisory lock and a hold on
        PostgreSQL (several processes), neither on SQLite (one process)."""
        if engine.dialect.name == "postgresql":
            hold = min(interval / 2, MAX_HOLD)
            return cls(advance, interval=interval, lock=advisory_lock(engine), hold=hold, now=now)
        return cls(advance, interval=interval, now=now)

    def slot(self, at: datetime) -> int:
        """The number of the slot holding the instant `at` (aware)."""
        return (at - EPOCH) // self.interval

    def __call__(self) -> int | None:
        """Run once: how many cases changed, or None when skipped or failed. Never raises."""
        try:
            slot = self.slot(self.now())
            with self.lock() as mine:
                if not mine:
                    self.skips += 1
                    logger.debug(
                        "%s: slot=%d skipped, another process holds the lock", self.name, slot
                    )
                    return None
                changed = self.advance()
                self.runs += 1
                logger.info("%s: changed=%d slot=%d pid=%d", self.name, changed, slot, os.getpid())
                self._keep_until(EPOCH + slot * self.interval + self.hold)
                return changed
        except Exception:
            self.failures += 1
            logger.exception("%s: the run failed (%d failure(s) so far)", self.name, self.failures)
            return None

    def stop(self) -> None:
        """End a hold in progress at once and make later ones return immediately."""
        self._stopping.set()

    def _keep_until(self, until: datetime) -> None:
        """Wait (keeping the lock) until `until`, or until `stop()`."""
        seconds = (until - self.now()).total_seconds()
        if seconds > 0:
            self._stopping.wait(seconds)


def start_scheduler(
    job: AdvanceJob, scheduler: BackgroundScheduler | None = None
) -> BackgroundScheduler:
    """Start `scheduler` (default: a new `BackgroundScheduler`) running `job` at each slot.

    Runs never overlap in one process (``max_instances=1``) and missed ones
    collapse into one (``coalesce=True``). Returns the running scheduler; stop
    it with `job.stop()` then ``scheduler.shutdown()``.
    """
    scheduler = BackgroundScheduler(timezone=UTC) if scheduler is None else scheduler
    schedule(job, scheduler)
    scheduler.start()
    return scheduler


def schedule(job: AdvanceJob, scheduler: BackgroundScheduler) -> None:
    """Add `job` to `scheduler` (started or not) at its slots, as `start_scheduler` does."""
    trigger = IntervalTrigger(seconds=job.interval.total_seconds(), start_date=EPOCH, timezone=UTC)
    scheduler.add_job(
        job,
        trigger,
        id=job.name,
        name="advance case levels" if job.name == "advance" else job.name,
        max_instances=1,
        coalesce=True,
        misfire_grace_time=max(1, int(job.interval.total_seconds() // 2)),
    )
