"""Case projection out of the request path: the queue drained in batches, once across servers.

    Projection(engine, refresh, batch_size=...)   one drainer of the projection queue
        run_once() -> int | None      project one batch of queued cases (None: another
                                      server is at it)
        catch_up(timeout)             return once the queue is empty
        lag() -> Lag                  queued cases and the oldest one's mark
        due(now) -> bool              whether the background loops project now: ingest
                                      paused for `quiet`, or a case waited `max_lag`
    ProjectionWorker(projection)      a thread draining it when due, looking every `poll`
        wake(cases)                   the ingest's `on_accepted`: look now
        start(); stop()
    ProjectorProcess(config)          ``python -m server.projection``: the same in a process
        start(); stop()               of its own, looking every 50 ms (the default)

An ingest answers once its events are durable; the same transaction queues
their cases (`server.store.queue`). A drainer takes a batch of queued cases
with their versions, re-derives them from all their events through
`CaseProjector.refresh`, and forgets each case whose version did not move
meanwhile. Bigger batches than a request's are the point: a case with several
batches of events waiting is derived once.

Several servers on one PostgreSQL: a drainer runs a batch only while holding
the advisory lock `QUEUE_LOCK_KEY` (`server.jobs.advisory_lock`), so one
batch is projected at a time across them; two projections of one case never
interleave, and one that read older events cannot write after one that read
newer. The others skip and look again at their next poll. A server killed
mid-batch holds no lock afterwards and leaves its batch queued: the next
drainer projects it again (projection is idempotent). Each batch the
projector writes holds the lock of every writer of case state
(`server.store.database.exclusive`; on SQLite a lock of the server's processes,
the database's write lock taken only to write), so each derivation reads and
writes with no other writer of case state in between: a later
one always reads at least the events an earlier one read. Within one process a
mutex keeps a background drainer and `catch_up` from running batches at once.

The projection process follows an edited config/ as the server does (it
watches the directory when `watch_config` is on, and the server passes its
SIGHUP on): from its next batch it derives with the new clock and catalog.
"""

from __future__ import annotations

import argparse
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from sqlalchemy import Engine

from server.jobs import RunLock, advisory_lock, no_lock
from server.store.database import make_engine
from server.store.queue import Lag, ProjectionQueue

__all__ = [
    "QUEUE_LOCK_KEY",
    "Projection",
    "ProjectionWorker",
    "ProjectorProcess",
    "serve",
]

logger = logging.getLogger(__name__)

#: The PostgreSQL advisory lock key of the queue's drainer: "esupprq1" read as a
#: big-endian signed 64-bit integer. Fixed forever: servers of different versions must
#: agree on it. (Each batch's writes also take the projection lock of every writer of
#: case state, `server.dailycounts.PROJECTION_LOCK_KEY`, a key of its own.)
QUEUE_LOCK_KEY: Final = int.from_bytes(b"esupprq1", "big", signed=True)

#: Project once no new case was queued for this long (ingest paused)...
QUIET: Final = timedelta(seconds=1)
#: ...or once a case waited this long, whatever ingest is doing.
MAX_LAG: Final = timedelta(seconds=30)

Key = tuple[str, str]

#: What the projection process prints on its standard output once it is ready.
READY: Final = b"projection ready"


class Projection:
    """Drains the projection queue of `engine` through `refresh` (`CaseProjector.refresh`).

    `batch_size` cases are taken per run. `lock` says whether this process may
    project now (default: the advisory lock on PostgreSQL, none on SQLite).
    `quiet` and `max_lag` say when the background loops project (`due`).
    """

    def __init__(
        self,
        engine: Engine,
        refresh: Callable[[Iterable[Key]], int],
        *,
        batch_size: int = 2000,
        lock: RunLock | None = None,
        quiet: timedelta = QUIET,
        max_lag: timedelta = MAX_LAG,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        self.queue = ProjectionQueue(engine)
        self.refresh = refresh
        self.batch_size = batch_size
        if lock is None:
            postgres = engine.dialect.name == "postgresql"
            lock = advisory_lock(engine, QUEUE_LOCK_KEY) if postgres else no_lock
        self.lock = lock
        self.quiet = quiet
        self.max_lag = max_lag
        self._mutex = threading.Lock()
        #: Cases projected by this process so far.
        self.projected = 0

    def run_once(self) -> int | None:
        """Project one batch of queued cases: how many were taken (0: the queue is empty),
        or None when another process holds the lock."""
        with self._mutex, self.lock() as mine:
            if not mine:
                return None
            taken = self.queue.take(self.batch_size)
            if taken:
                self.refresh([(department, case_id) for department, case_id, _ in taken])
                self.queue.done(taken)
                self.projected += len(taken)
            return len(taken)

    def drain(self) -> int | None:
        """Run batches until the queue is empty: how many cases, None when locked out."""
        total = 0
        while True:
            taken = self.run_once()
            if taken is None:
                return None
            total += taken
            if taken == 0:
                return total

    def catch_up(self, timeout: float = 60.0, poll: float = 0.05) -> None:
        """Return once the queue is empty, projecting here whatever this process may.

        When another server holds the lock, waits for it to empty the queue,
        looking every `poll` seconds. Raises `TimeoutError` after `timeout` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            self.drain()
            if self.queue.pending() == 0:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the projection did not catch up within {timeout} s: {self.lag()}"
                )
            time.sleep(poll)

    def lag(self) -> Lag:
        """How many cases are queued and since when."""
        return self.queue.lag()

    def due(self, now: datetime) -> bool:
        """Whether to project now: cases are queued, and either no new case was queued
        for `quiet` (ingest paused) or the oldest has waited `max_lag` already.

        Projection and ingest share the machine (and on SQLite the one writer):
        projecting while a burst of batches arrives would slow every batch, while
        projecting after it takes the cases of many batches in big batches. The
        `max_lag` bound keeps the projection up with sustained ingest.
        """
        span = self.queue.span()
        if span is None:
            return False
        oldest, newest = span
        return now - newest >= self.quiet or now - oldest >= self.max_lag

    def project_when_due(self, now: datetime) -> int | None:
        """One batch (`run_once`) when `due(now)`; else 0. The background loops call this
        every `poll`, so that ingest gets the database between two batches."""
        return self.run_once() if self.due(now) else 0


class ProjectionWorker:
    """A daemon thread that looks every `poll` seconds, or when woken, whether the
    projection is due (`Projection.due`) and then drains the queue. Polling also
    picks up what other servers queued and what a crash left. Failures are
    logged and counted in `failures`; the next look tries again.
    """

    def __init__(self, projection: Projection, *, poll: float = 0.05) -> None:
        self.projection = projection
        self.poll = poll
        self.failures = 0
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="projection", daemon=True)

    def wake(self, _cases: object = None) -> None:
        """There are newly queued cases (the ingest's `on_accepted`)."""
        self._wake.set()

    def start(self) -> None:
        """Start the thread; it first projects whatever is queued already."""
        self._wake.set()
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the batch in progress."""
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.poll)
            if self._stopping.is_set():
                return
            self._wake.clear()
            try:
                self.projection.project_when_due(datetime.now(UTC))
            except Exception:
                self.failures += 1
                logger.exception("projection: a batch failed (%d so far)", self.failures)


class ProjectorProcess:
    """The projection in a process of its own (``python -m server.projection``), so that
    it runs on another core than the HTTP server instead of taking turns with it for
    the interpreter lock. It exits when told to (`stop`) or when its parent is gone."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.process: subprocess.Popen[bytes] | None = None
        self.ready = False

    def start(self, timeout: float = 60.0) -> None:
        """Start the process and return once it is ready to project (its imports and
        configuration loaded), so that it does not start up while requests arrive.
        Raises `RuntimeError` when it exits or is not ready within `timeout` seconds."""
        command = [sys.executable, "-m", "server.projection", "--config", str(self.config)]
        command += ["--parent", str(os.getpid())]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE)
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else b""
        if line.strip() != READY:
            self.stop()
            raise RuntimeError(f"the projection process did not start (it said {line!r})")
        self.ready = True  # its SIGHUP handler is in place

    def reload(self) -> None:
        """Pass a reload (SIGHUP) on: the process reads config/ again."""
        if self.ready and self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGHUP)

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def serve(config: Path, parent: int | None, *, poll: float = 0.05) -> int:
    """Drain the projection queue of the settings' database until SIGTERM, or until the
    process `parent` is no longer this one's parent. Looks every `poll` seconds."""
    from casework.configfiles import load_config
    from server.cases import CaseProjector
    from server.cli import LOG_FORMAT
    from server.liveconfig import ConfigReloader, Configuration, ConfigWatcher, LiveConfig
    from server.settings import load_settings

    settings = load_settings(config)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    engine = make_engine(settings.database)
    watcher: ConfigWatcher | None = None
    try:
        live = LiveConfig(Configuration.of(load_config(settings.config_dir)))
        projector = CaseProjector(
            engine, live().clock, live().deployment, config=live().fingerprint
        )
        live.listen(
            lambda _old, new: projector.reconfigure(new.clock, new.deployment, new.fingerprint)
        )
        reload = ConfigReloader(settings.config_dir, live)
        signal.signal(signal.SIGHUP, lambda *_: threading.Thread(target=reload).start())
        if settings.watch_config:
            watcher = ConfigWatcher(
                settings.config_dir, reload, quiet=settings.config_quiet_seconds
            ).start()
        projection = Projection(engine, projector.refresh)
        logger.info("projection: started pid=%d", os.getpid())
        sys.stdout.buffer.write(READY + b"\n")
        sys.stdout.buffer.flush()
        failures = 0
        while not stopping.is_set():
            if parent is not None and os.getppid() != parent:
                logger.info("projection: the server is gone; stopping")
                break
            try:
                projection.project_when_due(datetime.now(UTC))
            except Exception:
                failures += 1
                logger.exception("projection: a batch failed (%d so far)", failures)
            stopping.wait(poll)
    finally:
        if watcher is not None:
            watcher.stop()
        engine.dispose()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Project queued cases until stopped.")
    parser.add_argument("--config", type=Path, required=True, help="the server's settings file")
    parser.add_argument("--parent", type=int, help="stop when this process is gone")
    args = parser.parse_args(argv)
    return serve(args.config, args.parent)


if __name__ == "__main__":
    sys.exit(main())
