"""The live clocks, the notifier and the metrics server together, on real threads and
real sockets: a late case arrives, its notice reaches a local webhook, and /metrics
shows the flags. Waits have generous limits; nothing is timed."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from clockfakes import Events, FakeClock, deployment, feed, make_clocks, opener
from prometheus_client.parser import text_string_to_metric_families

from agent.httpserver import AgentHttpServer, HttpSettings
from agent.metrics import AgentCollector, agent_registry
from agent.notify import Notifier, NotifySettings


class Webhook:
    """A local webhook that records what it is sent."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.received = threading.Event()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                hook.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()
                hook.received.set()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/notices"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    hook.thread.start()
    try:
        yield hook
    finally:
        hook.server.shutdown()
        hook.server.server_close()


def test_a_late_case_reaches_the_webhook_and_the_metrics(tmp_path: Path, webhook: Webhook) -> None:
    path = tmp_path / "state.db"
    now = FakeClock("2024-03-13 09:00")
    settings = NotifySettings(webhook_url=webhook.url, contacts={"fgw": "fgw-duty@city.example"})
    notifier = Notifier(settings, opener(path))
    clocks = make_clocks(path, now, notifier)
    collector = AgentCollector(
        "agent-fgw",
        "0.1.0",
        departments=[d.code for d in deployment().departments],
        clocks=clocks,
        notices=notifier,
    )
    server = AgentHttpServer(HttpSettings(port=0), agent_registry(collector))
    server.start()
    notifier.start()
    clocks.start()
    try:
        feed(clocks, path, Events()("accepted", "2024-03-04 10:00", case_id="2024-XK-0042"))
        assert webhook.received.wait(30), "no notice reached the webhook"
        exposition = httpx.get(f"http://127.0.0.1:{server.port}/metrics").text
    finally:
        clocks.stop()
        notifier.stop()
        server.stop()
    (notice,) = webhook.bodies
    assert notice["contact"] == "fgw-duty@city.example"
    assert notice["case_id"] == "2024-XK-0042"
    assert notice["levels"] == ["warning", "yellow"]
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(exposition)
        for s in family.samples
    }
    assert values[("esup_agent_flags_total", (("department", "fgw"), ("level", "yellow")))] == 1
    assert values[("esup_agent_open_cases", (("department", "fgw"), ("level", "yellow")))] == 1
    assert values[("esup_agent_open_cases", (("department", "jyj"), ("level", "yellow")))] == 0
