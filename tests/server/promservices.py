"""Real Prometheus, Alertmanager and node exporter processes for integration tests.

    find_binary(require_service, "prometheus-alertmanager", "alertmanager") -> path
    with running(command, ready_url, log) as process: ...

Each runs on a free loopback port with its storage in the test's temporary
folder and is stopped (SIGTERM, then SIGKILL) whatever happens.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import httpx


def find_binary(require_service: Callable[[str, str], NoReturn], *names: str) -> str:
    """The first of `names` on PATH; else skip (or fail in CI) naming the Debian package."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    require_service(names[0], f"none of {', '.join(names)} is on PATH")


@contextmanager
def running(
    command: Sequence[str], ready_url: str, log: Path, timeout: float = 60
) -> Iterator[subprocess.Popen[bytes]]:
    """`command` started with its output in `log`, once `ready_url` answers 200."""
    with log.open("wb") as out:
        process = subprocess.Popen(list(command), stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            while True:
                if process.poll() is not None:
                    raise AssertionError(
                        f"{command[0]} exited early:\n{log.read_text(errors='replace')}"
                    )
                try:
                    if httpx.get(ready_url, timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"{command[0]} was not ready in {timeout} s")
                time.sleep(0.1)
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def wait_for(check: Callable[[], object], what: str, timeout: float = 30) -> object:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what} after {timeout} s")
        time.sleep(0.2)
