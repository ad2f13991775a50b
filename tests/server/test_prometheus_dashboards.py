"""Every dashboard query against a real Prometheus scraping a real server and an agent.

Prometheus (Debian `prometheus`) scrapes, every second, an `esup-server run`
process whose store holds the cases of observed.py, and an agent target; it
also loads config/prometheus/esup-rules.yml. Then every query of every panel
of config/grafana/dashboards (variables substituted) and of every dashboard
variable must parse and return data, and every rule must load healthy.

The agent target is the `agent_target` fixture. The agent is not part of this
tree yet, so for now the fixture serves RECORDED_AGENT_EXPOSITION, a recorded
exposition using the agent's metric names from docs/metrics.md; replace the
fixture with a running agent when there is one.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest
from observed import AGENT, DEPARTMENTS, seed
from promservices import find_binary, running, wait_for
from serverprocess import free_port, running_server

from server.store.database import make_engine
from server.store.tokens import TokenStore

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "config" / "grafana" / "dashboards").glob("*.json"))
RULES = ROOT / "config" / "prometheus" / "esup-rules.yml"
#: Not a live agent: a recorded exposition with the agent's metric names (see the docstring).
RECORDED_AGENT_EXPOSITION = Path(__file__).parent / "data" / "recorded_agent_exposition.txt"
VARIABLES = {"$department": "fgw", "$item": "fgw-002"}


@pytest.fixture(scope="module")
def agent_target() -> Iterator[str]:
    """host:port of an agent's /metrics. For now: RECORDED_AGENT_EXPOSITION, served as is."""
    body = RECORDED_AGENT_EXPOSITION.read_bytes()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/metrics" else 404)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.end_headers()
            self.wfile.write(body if self.path == "/metrics" else b"")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def server_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """host:port of a running esup server whose store holds the observed cases."""
    tmp_path = tmp_path_factory.mktemp("server")
    database = f"sqlite:///{tmp_path / 'esup.db'}"
    with running_server(tmp_path, database, "metrics", metrics_cache_seconds=1) as server:
        engine = make_engine(database)
        try:
            token = TokenStore(engine).create(AGENT, DEPARTMENTS)
        finally:
            engine.dispose()
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            seed(client, token, datetime.now(UTC))
        yield f"127.0.0.1:{server.port}"


@pytest.fixture(scope="module")
def prometheus(
    tmp_path_factory: pytest.TempPathFactory,
    server_target: str,
    agent_target: str,
    require_service: Callable[[str, str], NoReturn],
) -> Iterator[str]:
    binary = find_binary(require_service, "prometheus")
    tmp_path = tmp_path_factory.mktemp("prometheus")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        json.dumps(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(RULES)],
                "scrape_configs": [
                    {"job_name": "esup-server", "static_configs": [{"targets": [server_target]}]},
                    {"job_name": "esup-agent", "static_configs": [{"targets": [agent_target]}]},
                ],
            }
        ),
        encoding="utf-8",
    )
    url = f"http://127.0.0.1:{port}"
    command = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with running(command, f"{url}/-/ready", tmp_path / "prometheus.log"):
        # Enough samples of both targets for rate() and increase() over them.
        wait_for(
            lambda: (
                _query(url, 'min(count_over_time(up{job=~"esup-.*"}[1m]))')
                and float(
                    _query(url, 'min(count_over_time(up{job=~"esup-.*"}[1m]))')[0]["value"][1]
                )
                >= 6
                and float(_query(url, 'min(up{job=~"esup-.*"})')[0]["value"][1]) == 1
            ),
            "six scrapes of the server and the agent",
            timeout=60,
        )
        yield url


def _query(url: str, expr: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10)
    doc = answer.json()
    assert (answer.status_code, doc["status"]) == (200, "success"), f"{expr}: {answer.text}"
    result: list[dict[str, Any]] = doc["data"]["result"]
    return result


def _substitute(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    return expr


def _queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and every variable of every dashboard."""
    found: list[tuple[str, str]] = []
    for path in DASHBOARDS:
        board = json.loads(path.read_text(encoding="utf-8"))
        for variable in board["templating"]["list"]:
            # label_values(selector, label): the selector must find series.
            match = re.fullmatch(r"label_values\((.+), *\w+\)", variable["query"]["query"])
            assert match, variable
            found.append((f"{path.name} variable {variable['name']}", match.group(1)))
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                where = f"{path.name} panel {panel['title']!r} {target['refId']}"
                found.append((where, target["expr"]))
    return found


def test_every_dashboard_query_parses_and_returns_data(prometheus: str) -> None:
    queries = _queries()
    assert len(queries) > 40

    empty = [where for where, expr in queries if not _query(prometheus, _substitute(expr))]

    assert empty == []


def test_the_alerting_rules_load_healthy_in_prometheus(prometheus: str) -> None:
    doc = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()
    rules = [r for g in doc["data"]["groups"] for r in g["rules"]]

    assert len(rules) == 13
    assert {r["health"] for r in rules} == {"ok"}
