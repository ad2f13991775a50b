"""The agent's local endpoint: /metrics from its own registry, /healthz, 404 elsewhere."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import httpx
import pytest

from agent.httpserver import AgentHttpServer, HttpSettings
from agent.metrics import AgentCollector, agent_registry


class Health:
    def __init__(self) -> None:
        self.healthy = True

    def __call__(self) -> tuple[bool, Mapping[str, Any]]:
        if self.healthy is None:
            raise RuntimeError("state database is locked")
        return bool(self.healthy), {"outbox_events": 3}


@pytest.fixture
def served() -> Iterator[tuple[str, Health]]:
    health = Health()
    server = AgentHttpServer(
        HttpSettings(port=0), agent_registry(AgentCollector("agent-x", "9.9")), health
    )
    server.start()
    try:
        yield f"http://127.0.0.1:{server.port}", health
    finally:
        server.stop()


def test_metrics_are_served(served: tuple[str, Health]) -> None:
    base, _ = served
    answer = httpx.get(f"{base}/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert 'esup_agent_info{agent="agent-x",version="9.9"} 1.0' in answer.text


def test_healthz_follows_the_check(served: tuple[str, Health]) -> None:
    base, health = served
    answer = httpx.get(f"{base}/healthz")
    assert (answer.status_code, answer.json()) == (200, {"status": "ok", "outbox_events": 3})
    health.healthy = False
    answer = httpx.get(f"{base}/healthz")
    assert (answer.status_code, answer.json()["status"]) == (503, "failing")
    health.healthy = None  # type: ignore[assignment]
    answer = httpx.get(f"{base}/healthz")
    assert answer.status_code == 503
    assert "locked" in answer.json()["error"]


def test_other_paths_are_not_found(served: tuple[str, Health]) -> None:
    base, _ = served
    assert httpx.get(f"{base}/").status_code == 404
    assert httpx.head(f"{base}/metrics").status_code == 200


def test_the_port_is_unknown_before_start() -> None:
    server = AgentHttpServer(HttpSettings(port=0), agent_registry(AgentCollector("a", "1")))
    with pytest.raises(RuntimeError, match="start"):
        _ = server.port


def test_settings_refuse_a_port_out_of_range() -> None:
    with pytest.raises(ValueError, match="port"):
        HttpSettings(port=70000)
