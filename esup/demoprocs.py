"""The demo's real processes: one `esup-server` on SQLite and one `esup-agent` per drop folder.

    start_server(folder, config_dir) -> Service       (ready: /readyz answered 200)
    create_token(service_config, agent, departments) -> str
    create_operator(service_config, name) -> str
    start_agent(folder, name, departments, url, token, drop) -> Service
    stop_all(services, timeout)                        (SIGTERM, wait, then SIGKILL)

`esup` talks to the server and the agents only through their command lines
and HTTP, never by importing them: it is the user-facing command and the
two are separate programs. Each process runs in a session of its own, so a
Ctrl-C in the terminal reaches the demo only, and `--keep` can leave them
running after the demo exits; its output goes to ``<name>.log`` beside its config.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

__all__ = [
    "DemoError",
    "Service",
    "command",
    "create_operator",
    "create_token",
    "free_port",
    "start_agent",
    "start_server",
    "stop_all",
]


class DemoError(Exception):
    """The demo cannot go on; the message says what failed and where its log is."""


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def command(program: str) -> list[str]:
    """How to run `program` (``esup-server``, ``esup-agent``): the script beside this
    Python, else one on PATH, else the module."""
    script = Path(sys.executable).parent / program
    if script.exists():
        return [str(script)]
    found = shutil.which(program)
    if found:
        return [found]
    module = {"esup-server": "server.cli", "esup-agent": "agent.cli"}[program]
    return [sys.executable, "-m", module]


@dataclass
class Service:
    """A started process: its name, config file, log file and `Popen`."""

    name: str
    config: Path
    log: Path
    process: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def tail(self, lines: int = 20) -> str:
        try:
            text = self.log.read_text("utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _spawn(name: str, argv: Sequence[str], config: Path, cwd: Path) -> Service:
    log = config.with_suffix(".log")
    with open(log, "wb") as out:
        process = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )
    return Service(name, config, log, process)


def _write_yaml(path: Path, document: object) -> None:
    path.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), "utf-8")


def start_server(folder: Path, config_dir: Path, *, timeout: float = 60) -> tuple[Service, str]:
    """Start `esup-server run` on SQLite in `folder` at a free loopback port; wait until
    /readyz answers 200. Returns the service and its base URL."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = folder / "server.yaml"
    _write_yaml(
        config,
        {
            "database": f"sqlite:///{(folder / 'esup.db').resolve()}",
            "config_dir": str(config_dir.resolve()),
            "listen": {"host": "127.0.0.1", "port": port},
            "watch_config": False,
            "metrics_cache_seconds": 1,
            "alerts": {"external_url": url},
        },
    )
    server = _spawn("esup-server", [*command("esup-server"), "run", "--config", str(config)],
                    config, folder)  # fmt: skip
    deadline = time.monotonic() + timeout
    while True:
        if not server.running():
            raise DemoError(f"esup-server exited early; its log ({server.log}):\n{server.tail()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return server, url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            stop_all([server])
            raise DemoError(f"esup-server was not ready in {timeout:.0f} s; see {server.log}")
        time.sleep(0.1)


def _printed_token(argv: Sequence[str], cwd: Path) -> str:
    """Run an `esup-server ... create` command; its token is the second line it prints."""
    done = subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True, timeout=120)
    lines = done.stdout.splitlines()
    if done.returncode != 0 or len(lines) < 2:
        raise DemoError(f"{' '.join(argv[-6:])} failed:\n{done.stdout}{done.stderr}")
    return lines[1].strip()


def create_token(
    server_config: Path, config_dir: Path, agent: str, departments: Iterable[str]
) -> str:
    """`esup-server token create` for `agent`, limited to `departments`."""
    database = yaml.safe_load(server_config.read_text("utf-8"))["database"]
    argv = [*command("esup-server"), "token", "create", "--agent", agent,
            "--departments", ",".join(departments), "--config", str(config_dir.resolve()),
            "--database", database]  # fmt: skip
    return _printed_token(argv, server_config.parent)


def create_operator(server_config: Path, name: str) -> str:
    """`esup-server operator create --role office`: a token to post evaluation inputs."""
    argv = [*command("esup-server"), "operator", "create", "--name", name,
            "--role", "office", "--config", str(server_config)]  # fmt: skip
    return _printed_token(argv, server_config.parent)


def start_agent(
    folder: Path, name: str, departments: Sequence[str], url: str, token: str, drop: Path
) -> Service:
    """Start `esup-agent run` watching `drop`, with a minimal config of its own in `folder`.

    Only the keys docs/agent.md lists as required, plus a short batch age, quick
    finishing of files (the demo writes each file whole, at once) and a free loopback
    port for the agent's /metrics and /healthz (several agents run side by side)."""
    folder.mkdir(parents=True, exist_ok=True)
    drop.mkdir(parents=True, exist_ok=True)
    config = folder / f"{name}.yaml"
    _write_yaml(
        config,
        {
            "name": name,
            "departments": list(departments),
            "server": {"url": url, "token": token},
            "state_dir": str((folder / name).resolve()),
            "delivery": {"batch_size": 1000, "batch_age_seconds": 0.2},
            "http": {"host": "127.0.0.1", "port": free_port()},
            "sources": [
                {
                    "kind": "dropfolder",
                    "name": drop.name,
                    "path": str(drop.resolve()),
                    "rescan_seconds": 2,
                    "finish_after_seconds": 1,
                }
            ],
        },
    )
    return _spawn(name, [*command("esup-agent"), "run", "--config", str(config)], config, folder)


def stop_all(services: Iterable[Service], timeout: float = 30) -> list[str]:
    """SIGTERM every running service, wait up to `timeout` s for all, SIGKILL any left.
    Returns a line per service that had to be killed or exited with an error."""
    services = list(services)
    for service in services:
        if service.running():
            service.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    problems = []
    for service in services:
        try:
            code = service.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            service.process.kill()
            service.process.wait(timeout=10)
            problems.append(f"{service.name} did not stop in {timeout:.0f} s: killed")
            continue
        if code not in (0, -signal.SIGTERM):
            problems.append(f"{service.name} exited with {code}; see {service.log}")
    return problems
