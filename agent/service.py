"""The whole agent of `esup-agent run`: the core and its live clocks, notices and metrics.

    AgentService(config, transport=..., now=...)
      run()      start every thread, block until `stop()`, then stop them in order
      stop()     safe from a signal handler
      health()   the /healthz check: every thread alive

What runs, in the order it starts (and stops in reverse):

1. the catalog (agent.catalogcache): from the server, cached in
   `catalog.cache_file`, the cache when the server is away; or `config_dir`.
   With neither server nor cache (a first start during an outage) the core
   runs all the same: the clocks' sink stores the events and marks their
   cases due, and the clocks start as soon as a catalog arrives (asked for
   every `CATALOG_RETRY_SECONDS`);
2. the notifier's thread (agent.notify), draining notices to the webhook;
3. the live clocks' thread (agent.liveclocks), an event sink of the outbox:
   the core hands it every batch inside the outbox transaction;
4. the core (agent.runner): one thread per source, one delivering;
5. the catalog refresher, every `catalog.refresh_seconds`: a changed catalog
   goes to the clocks (`set_deployment`) and the self-monitor's calendar;
6. the HTTP server (agent.httpserver): /metrics from agent.metrics over all
   of the above and agent.selfmonitor, /healthz.

On stop the core stops its sources (so no sink hears more), flushes delivery
within `delivery.stop_flush_seconds`, then the refresher, the clocks and the
notifier end and the HTTP server closes. Everything that is not finished is
in the state database for the next start: nothing is lost.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Final

import httpx

from agent import openstore
from agent.catalogcache import CatalogCache, CatalogError
from agent.config import AgentConfig
from agent.delivery import make_client, tls_context
from agent.httpserver import AgentHttpServer
from agent.liveclocks import LiveClocks, connect_state, record_events
from agent.metrics import AgentCollector, agent_registry
from agent.notify import Notifier
from agent.runner import Agent
from agent.selfmonitor import SelfMonitor
from casework.calendar import WorkCalendar
from casework.clock import Clock
from casework.config import CalendarConfig, Deployment
from casework.errors import ConfigError, ConfigErrors
from casework.events import CaseEvent

__all__ = [
    "CATALOG_RETRY_SECONDS",
    "AgentService",
    "ClocksSink",
    "agent_version",
    "check_departments",
    "release_free_memory",
]

logger = logging.getLogger(__name__)

#: How often an agent without any catalog asks for one.
CATALOG_RETRY_SECONDS: Final = 10.0


class ClocksSink:
    """The live clocks as the outbox's event sink, before they exist and after.

    Until `clocks` is set (no catalog yet), events are stored for them and their
    cases marked due (`record_events`); the metrics see no open cases.
    """

    def __init__(self) -> None:
        self.clocks: LiveClocks | None = None

    def record(self, conn: sqlite3.Connection, events: Sequence[CaseEvent]) -> None:
        clocks = self.clocks
        if clocks is None:
            record_events(conn, events)
        else:
            clocks.record(conn, events)

    def committed(self, events: Sequence[CaseEvent]) -> None:
        if self.clocks is not None:
            self.clocks.committed(events)

    def open_cases(self) -> dict[tuple[str, str], int]:
        return {} if self.clocks is None else self.clocks.open_cases()

    def flags_raised(self) -> dict[tuple[str, str], int]:
        return {} if self.clocks is None else self.clocks.flags_raised()

    def unknown_items(self) -> dict[str, int]:
        return {} if self.clocks is None else self.clocks.unknown_items()


def agent_version() -> str:
    try:
        return version("esup")
    except PackageNotFoundError:  # a source tree that is not installed
        return "0+unknown"


def check_departments(config: AgentConfig, deployment: Deployment, where: str) -> None:
    """Raise `ConfigErrors` for an agent department the deployment does not know."""
    known = {d.code for d in deployment.departments}
    unknown = [code for code in config.departments if code not in known]
    if unknown:
        problem = "the agent's department is not in the catalog"
        raise ConfigErrors([ConfigError(where, "departments", code, problem) for code in unknown])


def release_free_memory() -> bool:
    """Give the heap's free pages back to the system (glibc's malloc_trim); False when
    the C library has no such function. Start-up (imports, the catalog) leaves
    megabytes of freed memory in the heap that a long-running agent never reuses."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return False
    trim(0)
    return True


class AgentService:
    """Everything `esup-agent run` runs; build it, then `run()` in the main thread.

    `transport` replaces the HTTP transport to the server (tests); `now` the clock.
    Raises `agent.catalogcache.CatalogError` when there is no catalog at all, and
    `ConfigErrors` when the catalog lacks one of the agent's departments.
    """

    def __init__(
        self,
        config: AgentConfig,
        *,
        transport: httpx.BaseTransport | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._stop = threading.Event()
        token = config.token()
        self._catalog_client = make_client(config.server, token, transport)
        self.catalog = CatalogCache(config.catalog_settings(), client=self._catalog_client, now=now)
        config.state_dir.mkdir(parents=True, exist_ok=True)
        path = config.state_db

        def connect() -> sqlite3.Connection:
            return connect_state(path)

        self._connect = connect
        conn = connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            openstore.create_tables(conn)
            conn.execute("COMMIT")
        finally:
            conn.close()
        deployment: Deployment | None
        try:
            deployment = self.catalog.load()
        except CatalogError as exc:
            logger.error("%s The clocks start when a catalog arrives.", exc)
            deployment = None
        else:
            self._check(deployment)
        self._now = now
        self.notifier = Notifier(
            config.notify,
            connect,
            client=httpx.Client(timeout=config.notify.timeout_seconds, verify=tls_context()),
            now=now,
        )
        self.sink = ClocksSink()
        self._calendar: WorkCalendar | None = None
        if deployment is not None:
            self.sink.clocks = self._make_clocks(deployment)
        self.agent = Agent(
            config, transport=transport, clock=now, sinks=[self.sink], deployment=deployment
        )
        self.monitor = SelfMonitor(
            config.monitor,
            config.state_dir,
            self._calendar or WorkCalendar.from_config(CalendarConfig()),
            deployment.settings.zone if deployment is not None else "Asia/Shanghai",
            now=now,
        )
        self.collector = AgentCollector(
            config.name,
            agent_version(),
            departments=config.departments,
            outbox=self.agent.outbox,
            sources=lambda: list(self.agent.sources),
            delivery=self.agent.delivery,
            clocks=self.sink,
            monitor=self.monitor,
            notices=self.notifier,
        )
        self.http = AgentHttpServer(config.http, agent_registry(self.collector), self.health)
        self._refresher = threading.Thread(
            target=self._refresh_loop, name="catalog-refresh", daemon=True
        )

    def _check(self, deployment: Deployment) -> None:
        where = str(self.config.config_dir) if self.catalog.origin == "config" else "the catalog"
        check_departments(self.config, deployment, where)
        logger.info("catalog from %s: %d item(s)", self.catalog.origin, len(deployment.items))

    def _make_clocks(self, deployment: Deployment) -> LiveClocks:
        """The live clocks; their working-day calendar is the self-monitor's too (built
        once: a hundred years of days)."""
        clock = Clock.for_deployment(deployment)
        self._calendar = clock.calendar
        return LiveClocks(
            deployment,
            self._connect,
            settings=self.config.clocks,
            clock=clock,
            now=self._now,
            notices=self.notifier,
        )

    @property
    def clocks(self) -> LiveClocks | None:
        """The live clocks; None until there is a catalog."""
        return self.sink.clocks

    def stop(self) -> None:
        """Ask every part to stop (from a signal handler or another thread)."""
        self._stop.set()
        self.agent.stop()

    def health(self) -> tuple[bool, Mapping[str, Any]]:
        """Healthy while every thread runs; the document names each one."""
        threads = dict(self.agent.threads_alive())
        threads["clocks"] = self.clocks is not None and self.clocks.is_running()
        threads["notifier"] = self.notifier.is_running()
        threads["catalog-refresh"] = self._refresher.is_alive()
        details: dict[str, Any] = {
            "threads": threads,
            "catalog": self.catalog.origin,
            "stopping": self._stop.is_set(),
        }
        return bool(threads) and all(threads.values()) and not self._stop.is_set(), details

    def _first_catalog(self) -> bool:
        """Try to load a catalog for an agent that has none; start the clocks with it."""
        try:
            deployment = self.catalog.load()
            self._check(deployment)
        except (CatalogError, ConfigErrors) as exc:
            logger.warning("still no catalog: %s", exc)
            return False
        clocks = self._make_clocks(deployment)
        self.sink.clocks = clocks  # first: a batch committed from now on wakes them
        clocks.start()
        assert self._calendar is not None
        self.monitor.calendar = self._calendar
        self.monitor.tz = deployment.settings.zone
        return True

    def _refresh_loop(self) -> None:
        every = self.config.catalog.refresh_seconds
        waiting = self.clocks is None
        while not self._stop.wait(min(every, CATALOG_RETRY_SECONDS) if waiting else every):
            if waiting:
                waiting = not self._first_catalog()
                continue
            try:
                deployment = self.catalog.refresh()
                if deployment is None:
                    continue
                self._check(deployment)
            except Exception:  # the old catalog stays in use; the thread goes on
                logger.exception("refreshing the catalog failed; keeping the one in use")
                continue
            logger.info("the catalog changed: every open case is evaluated again")
            assert self.clocks is not None
            clock = Clock.for_deployment(deployment)
            self.clocks.set_deployment(deployment, clock)
            self.monitor.calendar = clock.calendar

    def _stop_clocks(self) -> None:
        if self.clocks is not None:
            self.clocks.stop()

    def run(self) -> None:
        """Start everything, block until `stop()`, stop everything in order."""
        started: list[Callable[[], None]] = []
        agent_started = waited = False
        try:
            self.notifier.start()
            started.append(self.notifier.stop)
            if self.clocks is not None:
                self.clocks.start()
            started.append(self._stop_clocks)
            self.agent.start()
            agent_started = True
            self._refresher.start()
            self.http.start()
            started.append(self.http.stop)
            release_free_memory()
            waited = True
            self.agent.wait()  # returns after stop(): sources ended, delivery flushed
        finally:
            self.stop()
            if not agent_started:
                self.agent.close()  # never started: close what it opened
            elif not waited:
                self.agent.wait()  # returns at once: stop() was called
            if self._refresher.is_alive():
                self._refresher.join(5.0)
            for stop in reversed(started):
                stop()
            self._catalog_client.close()
            logger.info("agent %s: every thread stopped", self.config.name)
