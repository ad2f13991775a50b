"""The whole agent, end to end: a real `esup-server`, a real `esup-agent run` whose
catalog comes from that server, a drop folder holding a case that is already overdue,
and a local webhook receiving the notices.

Checked: the events land in the server; the webhook receives the notice of the
card; /metrics shows the open case and the flags and passes `promtool check
metrics`; /healthz is ok; `esup-agent status` lists the open case by level. Then
the agent is stopped with SIGTERM and started again, the same events are read
again (a rewritten export), and no flag is raised twice.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NoReturn
from zoneinfo import ZoneInfo

import httpx
from agentrun import AgentProcess, served, stored_ids, write_config
from serverprocess import free_port

from agent.cli import main

ZONE = ZoneInfo("Asia/Shanghai")


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
        time.sleep(0.1)


@contextmanager
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local webhook: its URL and the notices it received."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/esup-notices", received
    finally:
        server.shutdown()
        server.server_close()


def events(now: datetime) -> list[dict[str, Any]]:
    """An overdue case (past its legal deadline: red) and one that is not."""
    long_ago = (now - timedelta(days=30)).astimezone(ZONE).isoformat()
    recent = (now - timedelta(hours=1)).astimezone(ZONE).isoformat()
    base = {"department": "fgw", "item": "fgw-001", "type": "accepted"}
    return [
        {**base, "event_id": "late-1", "case_id": "LATE-1", "at": long_ago}
        | {"promised_days": 1, "legal_days": 2},
        {**base, "event_id": "new-1", "case_id": "NEW-1", "at": recent}
        | {"promised_days": 30, "legal_days": 60},
    ]


def write_events(path: Path, lines: list[dict[str, Any]]) -> None:
    """Write under a temporary name, then rename (the documented way)."""
    temporary = path.parent / f".{path.name}.tmp"
    temporary.write_text("".join(json.dumps(e) + "\n" for e in lines), encoding="utf-8")
    temporary.rename(path)


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one series in an exposition, None when absent."""
    for match in re.finditer(rf"^{name}(?:\{{([^}}]*)\}})? (\S+)$", text, re.MULTILINE):
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
        if found == labels:
            return float(match.group(2))
    return None


def healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz").status_code == 200
    except httpx.TransportError:  # not listening yet
        return False


def status(config: Path) -> str:
    out = io.StringIO()
    assert main(["status", "--config", str(config)], out=out, err=out) == 0, out.getvalue()
    return out.getvalue()


def due_now(state: Path) -> int:
    """Cases whose events changed and the clocks have not evaluated yet."""
    conn = sqlite3.connect(state)
    try:
        return int(conn.execute("SELECT count(*) FROM clock_cases WHERE next_at = 0").fetchone()[0])
    finally:
        conn.close()


def test_the_whole_agent_end_to_end(
    tmp_path: Path, require_service: Callable[[str, str], NoReturn]
) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        require_service("promtool", "not on PATH (Debian package prometheus)")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with served(tmp_path, departments=["fgw"]) as (server, token, database), webhook() as hook:
        url, notices = hook
        config = write_config(
            tmp_path,
            server.base_url,
            token,
            extra=(
                f"http: {{port: {port}}}\n"
                f"notify: {{webhook_url: '{url}', contacts: {{fgw: '13800000000'}},"
                " backoff_seconds: 0.5}\n"
            ),
        )
        lines = events(datetime.now(UTC))
        write_events(tmp_path / "drop" / "export-1.jsonl", lines)
        agent = AgentProcess(config)
        try:
            wait_for(lambda: sorted(stored_ids(database)) == ["late-1", "new-1"], "delivery")
            wait_for(lambda: len(notices) >= 1, "the notice")
            (notice,) = notices
            assert notice["format"] == "esup.notice/1"
            assert (notice["case_id"], notice["level"]) == ("LATE-1", "red")
            assert notice["levels"] == ["warning", "yellow", "red"]
            assert notice["contact"] == "13800000000"
            # The catalog came from the server and is cached beside the state.
            cached = json.loads((tmp_path / "state" / "catalog.json").read_text("utf-8"))
            assert cached["url"] == server.base_url + "/api/v1/catalog"

            wait_for(lambda: healthy(base), "healthz")
            health = httpx.get(f"{base}/healthz").json()
            assert health["status"] == "ok"
            assert {"clocks", "notifier", "delivery", "source-drop"} <= set(health["threads"])
            text = httpx.get(f"{base}/metrics").text
            assert sample(text, "esup_agent_open_cases", department="fgw", level="red") == 1
            assert sample(text, "esup_agent_open_cases", department="fgw", level="normal") == 1
            for level in ("warning", "yellow", "red"):
                assert sample(text, "esup_agent_flags_total", department="fgw", level=level) == 1
            assert sample(text, "esup_agent_notices_total", outcome="sent") == 1
            checked = subprocess.run(
                [str(promtool), "check", "metrics"],
                input=text,
                capture_output=True,
                text=True,
                check=False,
            )
            assert (checked.returncode, checked.stdout, checked.stderr) == (0, "", "")

            report = status(config)
            assert "open cases:" in report
            assert "by_level: red 1, normal 1" in report
            assert "flags_raised: red 1, yellow 1, warning 1" in report
            assert agent.stop() == 0, agent.output()
        finally:
            agent.close()

        # Restarted, the agent hears the same events again: a rewritten export
        # (another first line, so it is a new file to the drop folder).
        again = AgentProcess(config, "agent-again")
        try:
            wait_for(lambda: healthy(base), "healthz again")
            write_events(tmp_path / "drop" / "export-2.jsonl", lines[::-1])
            state = tmp_path / "state" / "agent.db"

            def heard_again() -> bool:
                text = httpx.get(f"{base}/metrics").text
                dup = sample(text, "esup_agent_delivered_events_total", outcome="duplicate")
                return dup == 2 and due_now(state) == 0

            wait_for(heard_again, "the repeated events delivered and evaluated")
            text = httpx.get(f"{base}/metrics").text
            for level in ("warning", "yellow", "red"):
                assert sample(text, "esup_agent_flags_total", department="fgw", level=level) == 1
            assert sample(text, "esup_agent_open_cases", department="fgw", level="red") == 1
            assert sample(text, "esup_agent_notices_pending") == 0
            assert len(notices) == 1
            assert sorted(stored_ids(database)) == ["late-1", "new-1"]
            assert again.stop() == 0, again.output()
            assert "every thread stopped" in again.output()
        finally:
            again.close()
