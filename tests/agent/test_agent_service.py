"""The whole agent in one process (agent.service) over a fake server: an agent that
starts with no catalog at all still reads and delivers, keeps its events for the
clocks and starts them when the catalog arrives; /healthz says so meanwhile; a
refreshed catalog reaches the clocks; stop ends every thread."""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from agenthelpers import agent_config, line
from clockfakes import deployment

from agent import service
from agent.service import AgentService
from casework.calendar import WorkCalendar
from server.api.catalog import catalog_document


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen"
        time.sleep(0.02)


class FakeServer:
    """The catalog (down until `up`) and the events endpoint (accepts everything)."""

    def __init__(self) -> None:
        self.up = False
        self.catalog_requests = 0
        self.received: list[str] = []
        self.lock = threading.Lock()
        known = deployment()
        self.document = catalog_document(known, WorkCalendar.from_config(known.calendar))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/catalog":
            self.catalog_requests += 1
            if not self.up:
                return httpx.Response(503)
            return httpx.Response(200, json=self.document, headers={"ETag": '"v1"'})
        ids = [json.loads(x)["event_id"] for x in gzip.decompress(request.content).splitlines()]
        with self.lock:
            self.received.extend(ids)
        results = [{"index": i, "status": "accepted"} for i in range(len(ids))]
        return httpx.Response(200, json={"results": results})


def test_without_a_catalog_the_core_runs_and_the_clocks_start_when_it_arrives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "CATALOG_RETRY_SECONDS", 0.05)
    server = FakeServer()
    config = agent_config(
        tmp_path,
        delivery={"batch_age_seconds": 0.05},
        http={"port": 0},
        source={"rescan_seconds": 0.1},
    )
    agent = AgentService(config, transport=httpx.MockTransport(server))
    assert agent.clocks is None
    runner = threading.Thread(target=agent.run)
    runner.start()
    try:
        (tmp_path / "drop" / "a.jsonl").write_text(
            line(1, at="2024-03-01T09:30:00+08:00"), encoding="utf-8"
        )
        wait_for(lambda: server.received == ["e-1"], "delivery without a catalog")
        healthy, details = agent.health()
        assert not healthy
        assert details["threads"]["clocks"] is False
        assert agent.sink.open_cases() == {}

        server.up = True
        wait_for(lambda: agent.clocks is not None, "the clocks starting")
        wait_for(lambda: agent.sink.open_cases() == {("fgw", "red"): 1}, "the case evaluated")
        assert agent.sink.flags_raised() == {
            ("fgw", "warning"): 1,
            ("fgw", "yellow"): 1,
            ("fgw", "red"): 1,
        }
        wait_for(lambda: agent.health()[0], "healthy")
        assert (tmp_path / "state" / "catalog.json").exists()
        status, _, body = agent.http.respond("/metrics")
        assert status == 200
        assert b'esup_agent_open_cases{department="fgw",level="red"} 1.0' in body
    finally:
        agent.stop()
        runner.join(timeout=30)
    assert not runner.is_alive()
    names = {t.name for t in threading.enumerate()}
    assert not names & {
        "esup-liveclocks",
        "esup-notify",
        "catalog-refresh",
        "delivery",
        "source-drop",
        "esup-agent-http",
    }
