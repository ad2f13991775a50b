"""Real `esup-server` processes for tests: started, awaited, killed, always cleaned up.

with running_server(tmp_path, database, name="a", advance_seconds=1) as server:
    server.base_url; server.kill(); server.output()
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_command() -> list[str]:
    script = Path(sys.executable).parent / "esup-server"
    if script.exists():
        return [str(script)]
    found = shutil.which("esup-server")
    return [found] if found else [sys.executable, "-m", "server.cli"]


def upgrade(database: str, cwd: Path) -> None:
    """`esup-server db upgrade` on `database`, as an operator runs it."""
    subprocess.run(
        [*server_command(), "db", "upgrade", "--database", database],
        cwd=cwd,
        check=True,
        capture_output=True,
        timeout=60,
    )


class ServerProcess:
    """One `esup-server run` on loopback at a free port, its output in a log file."""

    def __init__(
        self,
        folder: Path,
        database: str,
        name: str,
        *,
        config_dir: Path = CONFIG,
        **settings: int | float | bool,
    ) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        extra = "".join(f"{key}: {str(value).lower()}\n" for key, value in settings.items())
        config = folder / f"server-{name}.yaml"
        config.write_text(
            f"database: {database}\nconfig_dir: {config_dir}\n"
            f"listen: {{host: 127.0.0.1, port: {self.port}}}\n{extra}",
            encoding="utf-8",
        )
        self._log: IO[str] = (folder / f"server-{name}.log").open("w+", encoding="utf-8")
        self.process = subprocess.Popen(
            [*server_command(), "run", "--config", str(config)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=folder,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},  # its log must be complete when it dies
        )
        self.pid = self.process.pid

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.process.poll() is None, f"the server exited early:\n{self.output()}"
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"the server was not ready in {timeout} s"
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flushing, no goodbye."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not ended within 15 s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        self._log.flush()
        self._log.seek(0)
        text = self._log.read()
        self._log.seek(0, os.SEEK_END)
        return text

    def close(self) -> None:
        self.stop()
        self._log.close()


@contextmanager
def running_server(
    folder: Path, database: str, name: str, **settings: Any
) -> Iterator[ServerProcess]:
    """A ready server; stopped (SIGTERM, else SIGKILL) whatever happens."""
    server = ServerProcess(folder, database, name, **settings)
    try:
        server.wait_ready()
        yield server
    finally:
        server.close()
