"""A real `esup-server` with a token, and real `esup-agent run` processes beside it.

with served(tmp_path, departments=["fgw"]) as (server, token, database): ...
AgentProcess(config_path).kill() / .stop() / .output()
stored_ids(database), quarantined(database), gaps(database)
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from serverprocess import ServerProcess, running_server, upgrade
from sqlalchemy import func, select

from server.store.database import make_engine
from server.store.tables import events, quarantine, seq_gaps
from server.store.tokens import TokenStore


def agent_command() -> list[str]:
    script = Path(sys.executable).parent / "esup-agent"
    if script.exists():
        return [str(script)]
    found = shutil.which("esup-agent")
    return [found] if found else [sys.executable, "-m", "agent.cli"]


@contextmanager
def served(
    folder: Path, departments: Sequence[str] = ("fgw",)
) -> Iterator[tuple[ServerProcess, str, str]]:
    """A ready server on a SQLite database in `folder`, and a token for agent-1."""
    database = f"sqlite:///{folder / 'server.db'}"
    upgrade(database, folder)
    engine = make_engine(database)
    try:
        token = TokenStore(engine).create("agent-1", list(departments))
    finally:
        engine.dispose()
    with running_server(folder, database, "main") as server:
        yield server, token, database


def write_config(
    folder: Path,
    url: str,
    token: str,
    *,
    departments: Sequence[str] = ("fgw",),
    delivery: str = "{batch_size: 500, batch_age_seconds: 0.2, max_backoff_seconds: 2}",
    finish_after: float = 0,
    extra: str = "http: {port: 0}\n",
) -> Path:
    """An agent config in `folder` with one drop folder `folder/drop`; `extra` is
    appended (further sections; by default /metrics on a free port)."""
    path = folder / "agent.yaml"
    path.write_text(
        f"name: agent-1\ndepartments: [{', '.join(departments)}]\n"
        f"server: {{url: '{url}', token: '{token}'}}\n"
        f"state_dir: state\ndelivery: {delivery}\n"
        "sources:\n"
        f"  - {{kind: dropfolder, name: drop, path: drop, rescan_seconds: 1,"
        f" finish_after_seconds: {finish_after}}}\n" + extra,
        encoding="utf-8",
    )
    (folder / "drop").mkdir(exist_ok=True)
    return path


class AgentProcess:
    """`esup-agent run --config FILE` with its output in a log file beside the config."""

    def __init__(self, config: Path, name: str = "agent") -> None:
        self._log: IO[str] = (config.parent / f"{name}.log").open("a+", encoding="utf-8")
        self.process = subprocess.Popen(
            [*agent_command(), "run", "--config", str(config)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=config.parent,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode

    def output(self) -> str:
        self._log.flush()
        self._log.seek(0)
        return self._log.read()

    def close(self) -> None:
        self.kill()
        self._log.close()


def _scalars(database: str, statement: Any) -> list[Any]:
    engine = make_engine(database)
    try:
        with engine.connect() as connection:
            return list(connection.execute(statement).scalars())
    finally:
        engine.dispose()


def stored_ids(database: str) -> list[str]:
    """The event ids in the server's events table (a list: duplicates would show)."""
    return _scalars(database, select(events.c.event_id))


def quarantined(database: str) -> int:
    return int(_scalars(database, select(func.count()).select_from(quarantine))[0])


def gaps(database: str) -> int:
    return int(_scalars(database, select(func.count()).select_from(seq_gaps))[0])
