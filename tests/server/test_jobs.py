"""The level-advancing job: one run per call with a fake clock and lock, the advisory
lock on PostgreSQL, and two real servers sharing one database, one killed mid-way."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from serverprocess import ServerProcess, upgrade
from sqlalchemy import Engine, text

from server.jobs import (
    EPOCH,
    MAX_HOLD,
    AdvanceJob,
    RunLock,
    advisory_lock,
    no_lock,
    start_scheduler,
)
from server.store.database import make_engine

MINUTE = timedelta(minutes=1)


class FakeNow:
    """A clock that stands still until told to move."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


class Advance:
    """`CaseProjector.advance` stand-in: returns the next count, or raises."""

    def __init__(self, *results: int | Exception) -> None:
        self.results = list(results)
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        result = self.results.pop(0)
        if isinstance(result, Exception):
            raise result
        return result


def held_lock(free: bool, entered: list[str]) -> RunLock:
    @contextmanager
    def lock() -> Iterator[bool]:
        entered.append("enter")
        try:
            yield free
        finally:
            entered.append("exit")

    return lock


def test_a_run_advances_and_logs_how_many_cases_changed(caplog: pytest.LogCaptureFixture) -> None:
    now = FakeNow(EPOCH + 10 * MINUTE + timedelta(seconds=59))
    job = AdvanceJob(Advance(3, 0), interval=MINUTE, now=now)
    caplog.set_level(logging.INFO, logger="server.jobs")
    assert job() == 3
    assert job() == 0
    assert (job.runs, job.skips, job.failures) == (2, 0, 0)
    assert re.search(r"advance: changed=3 slot=10 pid=\d+", caplog.text)


def test_a_run_skips_when_another_process_holds_the_lock(caplog: pytest.LogCaptureFixture) -> None:
    advance = Advance(5)
    entered: list[str] = []
    job = AdvanceJob(advance, interval=MINUTE, lock=held_lock(False, entered), now=FakeNow(EPOCH))
    caplog.set_level(logging.DEBUG, logger="server.jobs")
    assert job() is None
    assert advance.calls == 0
    assert entered == ["enter", "exit"]
    assert (job.runs, job.skips, job.failures) == (0, 1, 0)
    assert "slot=0 skipped, another process holds the lock" in caplog.text


def test_a_failure_is_logged_counted_and_the_next_run_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    entered: list[str] = []
    job = AdvanceJob(
        Advance(RuntimeError("database gone"), 2),
        interval=MINUTE,
        lock=held_lock(True, entered),
        now=FakeNow(EPOCH),
    )
    assert job() is None  # never raises into the scheduler's thread
    assert job.failures == 1
    assert "advance: the run failed (1 failure(s) so far)" in caplog.text
    assert "RuntimeError: database gone" in caplog.text
    assert entered == ["enter", "exit"]  # the lock was let go
    assert job() == 2
    assert (job.runs, job.failures) == (1, 1)


def test_a_lock_that_cannot_be_taken_is_a_counted_failure() -> None:
    @contextmanager
    def broken() -> Iterator[bool]:
        raise ConnectionError("no database")
        yield True  # pragma: no cover

    advance = Advance(1)
    job = AdvanceJob(advance, interval=MINUTE, lock=broken, now=FakeNow(EPOCH))
    assert job() is None
    assert (advance.calls, job.failures) == (0, 1)


def test_the_winner_keeps_the_lock_until_the_hold_ends_or_stop() -> None:
    entered: list[str] = []
    now = FakeNow(EPOCH + 7 * MINUTE + timedelta(seconds=1))
    hold = timedelta(seconds=30)
    job = AdvanceJob(
        Advance(1, 1), interval=MINUTE, lock=held_lock(True, entered), hold=hold, now=now
    )
    job.stop()  # a stopping server does not wait out the 29 s left of the hold
    started = time.monotonic()
    assert job() == 1
    assert time.monotonic() - started < 5
    assert entered == ["enter", "exit"]
    now.at = EPOCH + 7 * MINUTE + hold  # the hold is over: nothing to wait for
    assert job() == 1


def test_slots_are_whole_intervals_since_the_epoch() -> None:
    job = AdvanceJob(Advance(), interval=timedelta(seconds=10))
    assert job.slot(EPOCH) == 0
    assert job.slot(EPOCH + timedelta(seconds=9.999)) == 0
    assert job.slot(EPOCH + timedelta(seconds=10)) == 1
    assert job.slot(datetime(2000, 1, 1, 8, tzinfo=UTC).astimezone()) == 2880


def test_bad_intervals_and_holds_are_refused() -> None:
    with pytest.raises(ValueError, match="interval must be positive"):
        AdvanceJob(Advance(), interval=timedelta(0))
    with pytest.raises(ValueError, match="less than the interval"):
        AdvanceJob(Advance(), interval=MINUTE, hold=MINUTE)


def test_sqlite_runs_without_a_lock_or_a_hold(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'esup.db'}")
    try:
        job = AdvanceJob.for_engine(engine, Advance(), interval=MINUTE)
    finally:
        engine.dispose()
    assert job.lock is no_lock
    assert job.hold == timedelta(0)


def test_the_scheduler_runs_the_job_once_at_a_time_and_coalesces() -> None:
    job = AdvanceJob(Advance(), interval=MINUTE)
    scheduler = start_scheduler(job)
    try:
        scheduled = scheduler.get_job("advance")
        assert scheduled.max_instances == 1
        assert scheduled.coalesce is True
        assert scheduled.trigger.interval == MINUTE
        # Every process fires at the same instants: whole minutes since the epoch.
        assert (scheduled.next_run_time - EPOCH) % MINUTE == timedelta(0)
    finally:
        job.stop()
        scheduler.shutdown(wait=True)


# -- PostgreSQL ---------------------------------------------------------------------------


@pytest.fixture
def postgres_url(postgres_database: tuple[str, str]) -> Iterator[str]:
    """The session's PostgreSQL database, its schema emptied afterwards."""
    url, _name = postgres_database
    try:
        yield url
    finally:
        admin = make_engine(url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as connection:
                connection.execute(text("DROP SCHEMA public CASCADE"))
                connection.execute(text("CREATE SCHEMA public"))
        finally:
            admin.dispose()


def others_connected(engine: Engine) -> int:
    with engine.connect() as connection:
        count: int = connection.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalar_one()
        return count


@pytest.mark.postgres
def test_the_advisory_lock_lets_one_transaction_in(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    try:
        lock = advisory_lock(engine)
        with lock() as first, lock() as second:
            assert (first, second) == (True, False)
        with lock() as again:  # let go with the transaction
            assert again is True
        job = AdvanceJob.for_engine(engine, Advance(), interval=timedelta(seconds=1))
        assert job.hold == timedelta(seconds=0.5)
        assert AdvanceJob.for_engine(engine, Advance(), interval=MINUTE).hold == MAX_HOLD
    finally:
        engine.dispose()


RUN = re.compile(r"advance: changed=\d+ slot=(\d+) pid=(\d+)")


def runs(*servers: ServerProcess) -> dict[int, list[int]]:
    """Slot → the pids of the processes that ran the job in it, from the servers' logs."""
    ran: dict[int, list[int]] = {}
    for server in servers:
        for slot, pid in RUN.findall(server.output()):
            ran.setdefault(int(slot), []).append(int(pid))
    return ran


def wait_for_slots(
    servers: tuple[ServerProcess, ...], after: int, count: int
) -> dict[int, list[int]]:
    """The runs, once `count` slots after `after` have run (at most 20 s)."""
    deadline = time.monotonic() + 20
    while True:
        ran = runs(*servers)
        if len([s for s in ran if s > after]) >= count:
            return ran
        assert time.monotonic() < deadline, f"only these runs in 20 s: {ran}"
        time.sleep(0.1)


def slot_now() -> int:
    return (datetime.now(UTC) - EPOCH) // timedelta(seconds=1)


def assert_once_per_slot(ran: dict[int, list[int]], first: int, last: int) -> None:
    """No slot run twice; each slot from `first` to `last` run."""
    twice = {slot: pids for slot, pids in ran.items() if len(pids) > 1}
    assert twice == {}, f"slots run by more than one process: {twice}"
    missing = [slot for slot in range(first, last + 1) if slot not in ran]
    assert missing == [], f"slots nobody ran: {missing} in {ran}"


@pytest.mark.postgres
def test_two_servers_run_the_job_once_per_interval_and_survive_a_kill(
    postgres_url: str, tmp_path: Path
) -> None:
    upgrade(postgres_url, tmp_path)
    a = ServerProcess(tmp_path, postgres_url, "a", advance_seconds=1)
    b = ServerProcess(tmp_path, postgres_url, "b", advance_seconds=1)
    try:
        a.wait_ready()
        b.wait_ready()
        both_up = slot_now()  # both schedulers fire from the next slot on
        ran = wait_for_slots((a, b), both_up, 4)
        last = max(ran)
        assert_once_per_slot(ran, both_up + 1, last)
        # Kill the process that ran the latest slot, while it may still hold the lock.
        victim, survivor = (a, b) if ran[last] == [a.pid] else (b, a)
        victim.kill()
        killed = slot_now()
        ran = wait_for_slots((a, b), killed, 3)
        # A run the kill cut short logged nothing: its slot may go unrun; none after it.
        assert_once_per_slot(ran, killed + 1, max(ran))
        assert_once_per_slot({s: p for s, p in ran.items() if s <= last}, both_up + 1, last)
        after = {slot: pids for slot, pids in ran.items() if slot > killed}
        assert all(pids == [survivor.pid] for pids in after.values()), ran
    finally:
        a.close()
        b.close()
    engine = make_engine(postgres_url)
    try:
        deadline = time.monotonic() + 10
        while others_connected(engine) and time.monotonic() < deadline:
            time.sleep(0.05)  # the killed server's session ends as PostgreSQL notices
    finally:
        engine.dispose()
