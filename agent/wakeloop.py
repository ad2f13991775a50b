"""`WakeLoop`: a daemon thread that does its work, then sleeps until it is due again
or woken.

    WakeLoop(name, step, failure=...)   `step()` does the work and returns how many
                                        seconds may pass before it must run again
    start(); wake(); is_running(); stop(timeout)

The live clocks and the notifier both run this way: the next level change or
the next retry is the only reason to look again, and newly committed events or
notices wake the thread early. A failing step is logged and retried after
`retry_seconds`: the thread must outlive any one bad case or webhook.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

__all__ = ["WakeLoop"]

log = logging.getLogger(__name__)


class WakeLoop:
    """Runs `step` in a daemon thread named `name` until `stop`; `failure` is logged
    when a step raises."""

    def __init__(
        self,
        name: str,
        step: Callable[[], float],
        *,
        failure: str,
        retry_seconds: float = 60.0,
    ) -> None:
        self.name = name
        self.step = step
        self.failure = failure
        self.retry_seconds = retry_seconds
        self._cond = threading.Condition()
        self._woken = False
        self._stopping = False
        self._thread: threading.Thread | None = None

    def wake(self) -> None:
        """Run the step again now, not at the time it asked for."""
        with self._cond:
            self._woken = True
            self._cond.notify()

    def _run(self) -> None:
        while True:
            try:
                timeout = max(0.0, self.step())
            except Exception:  # the thread must survive; the failure is logged
                log.exception("%s; trying again in %.0f s.", self.failure, self.retry_seconds)
                timeout = self.retry_seconds
            with self._cond:
                if self._stopping:
                    return
                if not self._woken:
                    self._cond.wait(timeout)
                self._woken = False
                if self._stopping:
                    return

    def start(self) -> None:
        """Run the loop in a daemon thread."""
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def is_running(self) -> bool:
        """Whether the thread runs (for the agent's /healthz)."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        """End the loop after the step in progress; wait up to `timeout` seconds."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)
