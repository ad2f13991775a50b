"""`IngestWorkers`: batches of events checked and stored in worker processes.

    IngestWorkers(settings, processes=N, on_accepted=...)   started at once
    await workers.process(grant, body, encoding, content_type) -> Processed
    workers.reload()     later batches checked against config/ as it is now
    workers.close()

One Python process runs one thread's Python at a time, and a batch of 1,000
events costs tens of milliseconds of it (reading, checking, the rows, the
answer): with several agents posting at once, one server process is busy while
the machine's other cores are idle. With ``ingest_processes`` set, the server
hands each batch to one of that many worker processes instead, and keeps what
is cheap and shared in its own: HTTP, authentication, the size cap, metrics,
the jobs, the projection. A worker has its own engine on the same database and
an `Ingestor` of the configuration directory; it decompresses, reads, checks
and stores the batch in one transaction, as the server itself would, and
answers the response body, the counts and the cases that received new events
(the server passes those to `on_accepted`). On SQLite the writers of all
processes queue on one lock (`server.store.database.sqlite_writer`).

A worker stamps with the system clock. It loads config/ when it starts; a
reload starts new workers (the old ones finish the batches they hold), so a
batch is checked against one configuration. A worker exits when the server
process is gone. A worker that dies mid-batch fails that request (the caller
answers 503: the batch may or may not be stored, and resending it is safe) and
the pool is started again.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from server.ingest import OnAccepted, Processed
from server.store.tokens import Grant

if TYPE_CHECKING:
    from server.ingest import Ingestor
    from server.settings import ServerSettings

__all__ = ["IngestWorkers", "WorkerLostError"]

logger = logging.getLogger(__name__)


class WorkerLostError(Exception):
    """The worker process holding a batch died before it answered."""


@dataclass(frozen=True, slots=True)
class _Setup:
    """What a worker needs, sent to it when it starts."""

    database: str
    config_dir: Path
    clock_skew_seconds: int
    max_body_bytes: int
    parent: int
    fingerprint: str


_ingestor: Ingestor | None = None  # the worker's own, made by `_start`
_max_body_bytes = 0


def _start(setup: _Setup) -> None:
    """A worker's start: its engine and `Ingestor`, and a watch on the server process."""
    global _ingestor, _max_body_bytes
    from casework.configfiles import load_config
    from server.cli import LOG_FORMAT
    from server.ingest import Ingestor
    from server.reconfigure import clock_fingerprint
    from server.store.database import make_engine

    # The server stops its workers itself, after the batches in hand (or they notice it is
    # gone): a SIGTERM to the whole service, or Ctrl-C to the process group, must not end
    # them mid-batch.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(
        level=logging.INFO, format=LOG_FORMAT.replace("%(name)s", "%(name)s[%(process)d]")
    )
    deployment = load_config(setup.config_dir)
    if clock_fingerprint(deployment) != setup.fingerprint:
        logger.warning(
            "ingest worker %d: config/ changed since the server read it; checking against "
            "what it holds now",
            os.getpid(),
        )
    _ingestor = Ingestor(
        make_engine(setup.database),
        deployment,
        clock_skew=timedelta(seconds=setup.clock_skew_seconds),
    )
    _max_body_bytes = setup.max_body_bytes
    threading.Thread(target=_exit_with, args=(setup.parent,), daemon=True).start()


def _exit_with(parent: int) -> None:
    """End this worker once `parent` is no longer its parent (the server was killed)."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def _ready() -> int:
    return os.getpid()


def _process(grant: Grant, body: bytes, encoding: str, content_type: str | None) -> Processed:
    """One batch in a worker (`server.api.ingest.process_batch` on its `Ingestor`)."""
    from server.api.ingest import process_batch

    assert _ingestor is not None, "the worker did not start"
    return process_batch(_ingestor, grant, body, encoding, content_type, _max_body_bytes)


class IngestWorkers:
    """`processes` worker processes storing batches into the database of `settings`, checked
    against its config/; `on_accepted` hears each batch's cases with new events."""

    def __init__(
        self,
        settings: ServerSettings,
        fingerprint: str,
        *,
        processes: int,
        on_accepted: OnAccepted | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        self.settings = settings
        self.processes = processes
        self.on_accepted = on_accepted
        self.start_timeout = start_timeout
        self._lock = threading.Lock()
        self._closed = False
        self._pool = self._started(fingerprint)
        self._fingerprint = fingerprint

    def _started(self, fingerprint: str) -> ProcessPoolExecutor:
        """A pool of `processes` workers, each started and ready (its imports and
        configuration loaded), so that none starts up while requests wait."""
        settings = self.settings
        setup = _Setup(
            settings.database,
            settings.config_dir,
            settings.clock_skew_seconds,
            settings.max_body_bytes,
            os.getpid(),
            fingerprint,
        )
        pool = ProcessPoolExecutor(
            self.processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start,
            initargs=(setup,),
        )
        try:
            ready = [pool.submit(_ready) for _ in range(self.processes)]
            for future in ready:
                future.result(self.start_timeout)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        logger.info("ingest: %d worker process(es) ready", self.processes)
        return pool

    def reload(self, fingerprint: str) -> None:
        """Start new workers, which read config/ as it is now; the old ones finish what
        they hold and exit. Nothing once closed. Raises when the new ones cannot start
        (the old ones go on)."""
        with self._lock:
            if self._closed:
                return
            old, self._pool = self._pool, self._started(fingerprint)
            self._fingerprint = fingerprint
        old.shutdown(wait=False)

    async def process(
        self, grant: Grant, body: bytes, encoding: str, content_type: str | None
    ) -> Processed:
        """Process one request body in a worker. Raises what the batch raised there
        (`server.api.ingest.RefusedError` for a body refused as a whole), or
        `WorkerLostError` when a worker died (the batch may or may not be stored)."""
        while True:
            pool = self._pool
            try:
                future = pool.submit(_process, grant, body, encoding, content_type)
            except BrokenProcessPool:  # a RuntimeError too: first
                future = None
            except RuntimeError:
                if pool is not self._pool:  # shut down by a reload just now: to the new one
                    continue
                raise
            break
        try:
            if future is None:
                raise BrokenProcessPool
            done = await asyncio.wrap_future(future)
        except BrokenProcessPool:
            try:
                await asyncio.to_thread(self._replace, pool)
            except Exception:  # the next request tries again
                logger.exception("ingest: the workers could not be started again")
            raise WorkerLostError("an ingest worker process died") from None
        if done.cases and self.on_accepted is not None:
            try:
                self.on_accepted(set(done.cases))
            except Exception:
                logger.exception("on_accepted failed for %d case(s)", len(done.cases))
        return done

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        """Start the workers again after `broken` lost one (once, whoever notices first)."""
        with self._lock:
            if self._pool is not broken or self._closed:
                return
            logger.error("ingest: a worker process died; starting the workers again")
            self._pool = self._started(self._fingerprint)
        broken.shutdown(wait=False, cancel_futures=True)

    def pids(self) -> list[int]:
        """The worker processes' ids."""
        # ProcessPoolExecutor keeps them in `_processes` (checked on Python 3.11 to 3.13),
        # None once shut down.
        processes = getattr(self._pool, "_processes", None) or {}
        return [p.pid for p in list(processes.values())]

    def close(self) -> None:
        """Wait for the batches in hand, then stop the workers (once: a second call returns)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pool = self._pool
        pool.shutdown(wait=True)
