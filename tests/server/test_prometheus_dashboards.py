"""Every dashboard query against a real Prometheus scraping a real server and an agent.

Prometheus (Debian `prometheus`) scrapes, every second, an `esup-server run`
process whose store holds the cases of observed.py, and an agent target; it
also loads config/prometheus/esup-rules.yml. Then every query of every panel
of config/grafana/dashboards (variables substituted) and of every dashboard
variable must parse and return data, and every rule must load healthy.

The agent target is a real `esup-agent run` process (`agent_target`) whose
catalog comes from that server, with a drop folder holding overdue cases of
both departments and a line it rejects: its /metrics carries open cases,
flags, delivered events and a watched workflow process.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
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
AGENT_DOC = ROOT / "docs" / "agent-monitoring.md"
VARIABLES = {"$department": "fgw", "$item": "fgw-002"}


@pytest.fixture(scope="module")
def observed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A running esup server whose store holds the observed cases: its base URL and a
    token for the live agent."""
    tmp_path = tmp_path_factory.mktemp("server")
    database = f"sqlite:///{tmp_path / 'esup.db'}"
    with running_server(tmp_path, database, "metrics", metrics_cache_seconds=1) as server:
        engine = make_engine(database)
        try:
            tokens = TokenStore(engine)
            token = tokens.create(AGENT, DEPARTMENTS)
            agent_token = tokens.create("agent-live", DEPARTMENTS)
        finally:
            engine.dispose()
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            seed(client, token, datetime.now(UTC))
        yield server.base_url, agent_token


@pytest.fixture(scope="module")
def server_target(observed_server: tuple[str, str]) -> str:
    """host:port of the running server."""
    return observed_server[0].removeprefix("http://")


def _agent_events(now: datetime) -> str:
    """Overdue cases of both departments, one fresh case, and one line the agent rejects."""
    long_ago = (now - timedelta(days=30)).isoformat()
    recent = (now - timedelta(hours=1)).isoformat()
    lines = [
        {"event_id": "live-1", "case_id": "LIVE-R1", "department": "fgw", "item": "fgw-001"}
        | {"type": "accepted", "at": long_ago, "promised_days": 1, "legal_days": 2},
        {"event_id": "live-2", "case_id": "LIVE-R2", "department": "jyj", "item": "jyj-001"}
        | {"type": "accepted", "at": long_ago, "promised_days": 1, "legal_days": 2},
        {"event_id": "live-3", "case_id": "LIVE-N1", "department": "fgw", "item": "fgw-002"}
        | {"type": "accepted", "at": recent},
    ]
    return "".join(json.dumps(e) + "\n" for e in lines) + '{"event_id": "broken"\n'


@pytest.fixture(scope="module")
def agent_target(
    tmp_path_factory: pytest.TempPathFactory, observed_server: tuple[str, str]
) -> Iterator[str]:
    """host:port of a running `esup-agent run` with open cases, flags and delivered
    events, its catalog from the observed server."""
    sys.path.insert(0, str(ROOT / "tests" / "agent"))
    agentrun = importlib.import_module("agentrun")
    base_url, token = observed_server
    folder = tmp_path_factory.mktemp("agent")
    port = free_port()
    pidfile = folder / "workflow.pid"
    pidfile.write_text(f"{os.getpid()}\n", encoding="utf-8")
    config = agentrun.write_config(
        folder,
        base_url,
        token,
        departments=list(DEPARTMENTS),
        extra=f"http: {{port: {port}}}\nmonitor: {{workflow_pidfile: {pidfile}}}\n",
    )
    temporary = folder / "drop" / ".export.tmp"
    temporary.write_text(_agent_events(datetime.now(UTC)), "utf-8")
    temporary.rename(folder / "drop" / "export.jsonl")
    agent = agentrun.AgentProcess(config)
    url = f"http://127.0.0.1:{port}/metrics"

    def ready() -> bool:
        try:
            text = httpx.get(url, timeout=5).text
        except httpx.TransportError:
            return False
        return (
            'esup_agent_open_cases{department="jyj",level="red"} 1.0' in text
            and 'esup_agent_delivered_events_total{outcome="accepted"} 3.0' in text
        )

    try:
        wait_for(ready, "the live agent with its cases evaluated and delivered", timeout=60)
        yield f"127.0.0.1:{port}"
    finally:
        agent.stop()
        agent.close()


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


def test_the_live_agent_exposes_exactly_its_documented_series(
    agent_target: str, require_service: Callable[[str, str], NoReturn]
) -> None:
    text = httpx.get(f"http://{agent_target}/metrics", timeout=10).text
    table = AGENT_DOC.read_text(encoding="utf-8").split("## Metrics", 1)[1]
    documented = set(re.findall(r"^\| `(esup_agent_[a-z_]+)`", table, re.MULTILINE))
    exposed = set(re.findall(r"^# TYPE (\S+)", text, re.MULTILINE))
    assert exposed == documented
    promtool = shutil.which("promtool")
    if promtool is None:
        require_service("promtool", "not on PATH (Debian package prometheus)")
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, "", "")
