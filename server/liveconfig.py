"""The configuration a running server uses, and how a change of config/ reaches it.

    Configuration.of(deployment)          a deployment with its clock and fingerprint
    LiveConfig(configuration)             the one in service: live() -> Configuration
    LiveConfig.replace(deployment)        swap it whole and tell the listeners
    ConfigReloader(directory, live, ...)  read config/ again; on success put it in service
    ConfigWatcher(directory, reload)      watchdog on config/: reload once edits settle

Everything that reads the configuration per request (the case, catalog and
rates routes, the ingest checks) asks `live()` each time, so a replacement is
one attribute assignment and a request sees either the old or the new
configuration, never half of each.

A reload is all or nothing: a directory that does not load (a typo, a half
saved file) is logged with every problem -- file, key, value -- and the server
keeps the configuration it has. Once one loads, the listeners run: `esup-server
run` gives the projector the new clock and catalog and, when the clock's
fingerprint changed, recomputes the open cases in batches (server.reconfigure;
on PostgreSQL one server of several does it) and rebuilds the figures' daily
counts if the zone changed. Closed cases keep their results, as on a restart.

Reloads come from the watcher (edits under config/, debounced: `quiet` seconds
without another change) or from SIGHUP (`systemctl reload esup-server`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from casework.clock import Clock
from casework.config import Deployment
from casework.configfiles import load_config
from casework.errors import ConfigErrors
from server.reconfigure import clock_fingerprint

__all__ = ["ConfigReloader", "ConfigWatcher", "Configuration", "LiveConfig"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Configuration:
    """A deployment, the clock built from it, and the fingerprint of what the clock reads."""

    deployment: Deployment
    clock: Clock
    fingerprint: str

    @classmethod
    def of(cls, deployment: Deployment) -> Configuration:
        return cls(deployment, Clock.for_deployment(deployment), clock_fingerprint(deployment))


#: Hears each replacement: (the configuration before, the one now in service).
Listener = Callable[[Configuration, Configuration], None]


class LiveConfig:
    """The configuration in service; call it for the current one."""

    def __init__(self, configuration: Configuration) -> None:
        self._current = configuration
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()

    def __call__(self) -> Configuration:
        return self._current

    def listen(self, listener: Listener) -> None:
        """Call `listener` after every replacement, in the order they were added."""
        self._listeners.append(listener)

    def replace(self, deployment: Deployment) -> Configuration:
        """Put `deployment` in service, then run the listeners; returns the new configuration.

        Replacements are serialised: a listener's work (a recompute) ends
        before the next replacement starts.
        """
        new = Configuration.of(deployment)
        with self._lock:
            old, self._current = self._current, new
            for listener in self._listeners:
                listener(old, new)
        return new


class ConfigReloader:
    """Loads `directory` again and, when it loads, puts it into `live`; True when it did."""

    def __init__(
        self,
        directory: Path,
        live: LiveConfig,
        *,
        load: Callable[[Path], Deployment] = load_config,
    ) -> None:
        self.directory = Path(directory)
        self.live = live
        self.load = load
        self._lock = threading.Lock()

    def __call__(self) -> bool:
        with self._lock:
            try:
                deployment = self.load(self.directory)
            except ConfigErrors as exc:
                logger.error(
                    "configuration in %s not reloaded; the server keeps the one it has "
                    "(fingerprint %s). Problems:",
                    self.directory,
                    self.live().fingerprint[:12],
                )
                for error in exc.errors:
                    logger.error("  %s", error)
                return False
            except Exception:
                logger.exception("configuration in %s not reloaded", self.directory)
                return False
            before = self.live().fingerprint
            after = self.live.replace(deployment).fingerprint
            if after == before:
                logger.info("configuration reloaded; the clock's inputs are unchanged")
            else:
                logger.info("configuration reloaded: fingerprint %s -> %s", before[:12], after[:12])
            return True


class _Observer(Protocol):
    def schedule(self, handler: Any, path: str, *, recursive: bool = ...) -> Any: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def join(self, timeout: float | None = ...) -> None: ...


class _Settle(FileSystemEventHandler):
    """Restarts a timer on every change of a YAML file; the timer reloads."""

    def __init__(self, watcher: ConfigWatcher) -> None:
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        paths = [event.src_path, getattr(event, "dest_path", "")]
        if any(str(p).endswith((".yaml", ".yml")) for p in paths if p):
            self.watcher.changed()


class ConfigWatcher:
    """Watches `directory` (its YAML files) and calls `reload` once edits have settled
    for `quiet` seconds, so an editor's several writes make one reload.

    `observer` builds the watchdog observer (its polling observer for network
    shares, a fake in tests).
    """

    def __init__(
        self,
        directory: Path,
        reload: Callable[[], object],
        *,
        quiet: float = 2.0,
        observer: Callable[[], _Observer] = Observer,
    ) -> None:
        self.directory = Path(directory)
        self.reload = reload
        self.quiet = quiet
        self._observer = observer()
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    def changed(self) -> None:
        """A file changed: (re)start the quiet-period timer."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(self.quiet, self._fire)
            self._timer.daemon = True
            self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            self._timer = None
        try:
            self.reload()
        except Exception:  # a watcher thread must not die of it
            logger.exception("reloading the configuration failed")

    def start(self) -> ConfigWatcher:
        self._observer.schedule(_Settle(self), str(self.directory), recursive=False)
        self._observer.start()
        logger.info("watching %s for configuration changes", self.directory)
        return self

    def stop(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        self._observer.stop()
        self._observer.join(timeout=5)
