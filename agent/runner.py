"""The running agent: sources, outbox and delivery wired together, each in its thread.

    Agent(config, transport=..., clock=..., sinks=..., deployment=...)
      run()       start(), then wait()
      start()     the source threads and the delivery thread
      wait()      until `stop()`; then stop the sources, flush within a bound, close
      threads_alive()  each thread's name and whether it runs
      stop()      safe from a signal handler
      outbox, sources, delivery    the read-only views the metrics read

Each source runs in its own thread with its own state-database connection:
poll, then sleep until a notification wakes it or its interval passes (while
the outbox is at its cap, it looks again every `PAUSED_RECHECK_SECONDS`).
Delivery runs in one thread. On stop the sources finish the chunk in hand
and end, then delivery keeps sending for at most `delivery.stop_flush_seconds`
(partial batches at once); whatever is left stays in the outbox for the next
start. Nothing is lost either way: every step is a committed transaction.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from typing import Final

import httpx

from agent.config import AgentConfig, DropFolderConfig
from agent.delivery import Delivery, make_client
from agent.deployment import zone_of
from agent.outbox import EventSink, Outbox
from agent.sources import Source
from agent.sources.dropfolder import DropFolder
from agent.statedb import open_state_db
from casework.config import Deployment

__all__ = ["PAUSED_RECHECK_SECONDS", "Agent", "make_source"]

logger = logging.getLogger(__name__)

#: How often a paused source looks whether the outbox has room again.
PAUSED_RECHECK_SECONDS: Final = 0.5


def make_source(
    config: AgentConfig,
    index: int,
    conn: sqlite3.Connection,
    outbox: Outbox,
    deployment: Deployment | None,
    clock: Callable[[], float],
) -> Source:
    """The source `config.sources[index]` on `conn` (its own connection)."""
    entry = config.sources[index]
    zone = zone_of(deployment)
    if isinstance(entry, DropFolderConfig):
        return DropFolder(entry, conn, outbox, config.departments, clock=clock, zone=zone)
    from agent.sources.exchangedb import ExchangeDb  # SQLAlchemy only when configured

    return ExchangeDb(entry, conn, outbox, config.departments, clock=clock, zone=zone)


class Agent:
    """One agent process's work; build with the config, then `run()` in the main thread.

    `transport` replaces the HTTP transport (tests); `sinks` hear every batch
    put into the outbox; `deployment` is the catalog and calendar
    (agent.service loads it from the catalog cache).
    """

    def __init__(
        self,
        config: AgentConfig,
        *,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        sinks: Sequence[EventSink] = (),
        deployment: Deployment | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.deployment = deployment
        self.outbox = Outbox(config.outbox_cap_bytes, sinks=sinks, clock=clock)
        self._conns: list[sqlite3.Connection] = []
        main = self._connect()
        self.conn = main
        self.outbox.load(main)
        self.sources: list[Source] = [
            make_source(config, i, self._connect(), self.outbox, deployment, clock)
            for i in range(len(config.sources))
        ]
        self.client = make_client(config.server, config.token(), transport)
        self.delivery = Delivery(
            self._connect(), self.outbox, self.client, config.delivery, clock=clock
        )
        self._stop = threading.Event()
        self._sources_done = threading.Event()
        self._wakes = [threading.Event() for _ in self.sources]
        self._threads: list[threading.Thread] = []
        self._sender: threading.Thread | None = None

    def _connect(self) -> sqlite3.Connection:
        conn = open_state_db(self.config.state_db)
        self._conns.append(conn)
        return conn

    def stop(self) -> None:
        """Ask the agent to stop (from a signal handler or another thread)."""
        self._stop.set()
        self.outbox.arrived.set()
        for wake in self._wakes:
            wake.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _source_loop(self, source: Source, wake: threading.Event) -> None:
        try:
            source.start(wake.set)
        except Exception:
            logger.exception(
                "source %s: notifications failed to start; rescanning only", source.name
            )
        while not self._stop.is_set():
            wake.clear()
            try:
                more = source.poll()
            except Exception:
                logger.exception("source %s: reading failed; trying again", source.name)
                more = False
            if more:
                continue
            wait = PAUSED_RECHECK_SECONDS if self.outbox.paused() else source.interval
            wake.wait(wait)
        source.close()

    def _delivery_loop(self) -> None:
        deadline: float | None = None
        arrived = self.outbox.arrived
        while True:
            if self._sources_done.is_set():
                if deadline is None:
                    deadline = time.monotonic() + self.config.delivery.stop_flush_seconds
                if self.outbox.depth() == 0 or time.monotonic() >= deadline:
                    return
            arrived.clear()
            try:
                wait = self.delivery.step(flush=self._stop.is_set())
            except Exception:
                logger.exception("delivery failed unexpectedly; trying again")
                self.delivery.counts["failed_attempts"] += 1
                wait = self.delivery.backoff()
            if wait <= 0:
                continue
            if deadline is not None:
                wait = min(wait, max(deadline - time.monotonic(), 0.0))
            if self.delivery.retrying:
                if deadline is None:
                    self._sources_done.wait(wait)  # stopping: try once more, then flush
                else:
                    time.sleep(wait)
            else:
                arrived.wait(wait)

    def start(self) -> None:
        """Start the source threads and the delivery thread."""
        logger.info(
            "agent %s: %d source(s), %d event(s) waiting in the outbox, %d dead letter(s)",
            self.config.name,
            len(self.sources),
            self.outbox.depth(),
            self.outbox.dead_letters(),
        )
        self._threads = [
            threading.Thread(
                target=self._source_loop, args=(s, w), name=f"source-{s.name}", daemon=True
            )
            for s, w in zip(self.sources, self._wakes, strict=True)
        ]
        self._sender = threading.Thread(target=self._delivery_loop, name="delivery", daemon=True)
        for thread in self._threads:
            thread.start()
        self._sender.start()

    def threads_alive(self) -> dict[str, bool]:
        """Each thread's name and whether it runs (for the agent's /healthz)."""
        threads = [*self._threads, *([self._sender] if self._sender is not None else [])]
        return {thread.name: thread.is_alive() for thread in threads}

    def wait(self) -> None:
        """Block until `stop()`; then stop the sources, flush within the bound and close."""
        try:
            while not self._stop.wait(1.0):
                pass
        finally:
            self.stop()
            for thread in self._threads:
                thread.join()
            self._sources_done.set()
            if self._sender is not None:
                self._sender.join()
            left = self.outbox.depth()
            logger.info(
                "agent %s stopped; %d event(s) left in the outbox for the next start",
                self.config.name,
                left,
            )
            self.close()

    def run(self) -> None:
        """Run until `stop()`; returns when the sources ended and delivery flushed or timed out."""
        self.start()
        self.wait()

    def close(self) -> None:
        self.client.close()
        for conn in self._conns:
            conn.close()
        self._conns.clear()
