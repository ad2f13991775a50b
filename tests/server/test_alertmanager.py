"""Per-case alerts against the real Alertmanager (Debian prometheus-alertmanager).

The store holds the cases of observed.py, evaluated now (Alertmanager keeps
real time); config/alertmanager/alertmanager.yml as committed is its
configuration. Checked through Alertmanager's API v2: the alerts arrive with
their labels and annotations, group by department, the yellow alert of a red
case is inhibited, and closing a case or voiding a card resolves its alerts.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest
from fastapi.testclient import TestClient
from observed import AGENT, DEPARTMENTS, seed
from promservices import find_binary, running, wait_for
from serverprocess import free_port, running_server
from sqlalchemy import Engine, update

from casework.clock import Clock
from casework.config import Deployment
from casework.configfiles import load_config
from server.alerts import AlertmanagerNotifier, Links
from server.app import create_app
from server.cases import CaseProjector
from server.settings import ServerSettings
from server.store import tables
from server.store.database import make_engine
from server.store.tokens import TokenStore

ROOT = Path(__file__).resolve().parents[2]
AM_CONFIG = ROOT / "config" / "alertmanager" / "alertmanager.yml"
EXTERNAL = "https://esup.example"


@cache
def deployment() -> Deployment:
    return load_config(ROOT / "config")


@pytest.fixture
def alertmanager(tmp_path: Path, require_service: Callable[[str, str], NoReturn]) -> Iterator[str]:
    binary = find_binary(require_service, "prometheus-alertmanager", "alertmanager")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        binary,
        f"--config.file={AM_CONFIG}",
        f"--storage.path={tmp_path / 'alertmanager'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    with running(command, f"{url}/-/ready", tmp_path / "alertmanager.log"):
        yield url


def _alerts(url: str, **params: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{url}/api/v2/alerts", params=params, timeout=5)
    answer.raise_for_status()
    found: list[dict[str, Any]] = answer.json()
    return found


def _cases(url: str) -> set[tuple[str, str, str]]:
    return {
        (a["labels"]["department"], a["labels"]["case_id"], a["labels"]["level"])
        for a in _alerts(url)
    }


def test_alerts_arrive_group_by_department_and_resolve(migrated: Engine, alertmanager: str) -> None:
    now = datetime.now(UTC)
    d = deployment()
    projector = CaseProjector(migrated, Clock.for_deployment(d), d)
    app = create_app(ServerSettings(), engine=migrated, deployment=d, on_accepted=projector.refresh)
    token = TokenStore(migrated).create(AGENT, DEPARTMENTS)
    notifier = AlertmanagerNotifier(
        migrated, alertmanager, Links(EXTERNAL), interval=timedelta(seconds=60)
    )
    with TestClient(app) as client:
        seed(client, token, now)

        assert notifier() == 5

        expected = {
            ("fgw", "R1", "red"),
            ("fgw", "R1", "yellow"),
            ("fgw", "Y1", "yellow"),
            ("jyj", "R2", "red"),
            ("jyj", "R2", "yellow"),
        }
        assert _cases(alertmanager) == expected
        red = next(
            a
            for a in _alerts(alertmanager)
            if a["labels"]["case_id"] == "R1" and a["labels"]["level"] == "red"
        )
        assert red["labels"] == {
            "alertname": "EsupCaseOverdue",
            "department": "fgw",
            "item": "fgw-002",
            "level": "red",
            "case_id": "R1",
        }
        assert red["annotations"]["case_url"] == f"{EXTERNAL}/api/v1/cases/fgw/R1"
        assert red["annotations"]["handler"] == "张三"
        assert red["annotations"]["legal_due"] < now.date().isoformat()
        assert red["generatorURL"] == f"{EXTERNAL}/api/v1/cases/fgw/R1"
        assert datetime.fromisoformat(red["endsAt"]) > now + timedelta(seconds=150)

        # The yellow alerts of red cases are inhibited; Y1's is not.
        quiet = {
            (a["labels"]["case_id"], a["labels"]["level"])
            for a in _alerts(alertmanager)
            if a["status"]["inhibitedBy"]
        }
        assert quiet == {("R1", "yellow"), ("R2", "yellow")}

        # One group per department, under the department's receiver.
        def groups() -> dict[str, tuple[str, int]]:
            answer = httpx.get(f"{alertmanager}/api/v2/alerts/groups", timeout=5).json()
            return {
                g["labels"]["department"]: (g["receiver"]["name"], len(g["alerts"]))
                for g in answer
                if "department" in g["labels"]
            }

        wait_for(lambda: len(groups()) == 2, "the department groups")
        assert groups() == {"fgw": ("department-fgw", 3), "jyj": ("department-jyj", 2)}

        # Posting again re-posts the same alerts, not new ones; L1 (closed a moment ago,
        # within the run's look-back of one interval) is resolved again, harmlessly.
        assert notifier() == 5 + 2
        assert _cases(alertmanager) == expected

        # R1 closes; Y1's yellow card is voided on appeal.
        later = datetime.now(UTC)
        closing = {
            "event_id": "R1-9",
            "case_id": "R1",
            "department": "fgw",
            "item": "fgw-002",
            "type": "completed",
            "at": later.isoformat(),
            "result": "approved",
        }
        answer = client.post(
            "/api/v1/events", json=[closing], headers={"Authorization": f"Bearer {token}"}
        )
        assert answer.json()["accepted"] == 1, answer.text
    k = tables.cards.c
    with migrated.begin() as connection:
        connection.execute(
            update(tables.cards)
            .where(k.department == "fgw", k.case_id == "Y1", k.level == "yellow")
            .values(voided_at=later, void_reason="appeal upheld")
        )

    # R2's two still firing; R1's two and Y1's one resolved, L1's two again.
    assert notifier() == 2 + 3 + 2

    assert _cases(alertmanager) == {("jyj", "R2", "red"), ("jyj", "R2", "yellow")}


def test_a_running_server_posts_its_cases_on_schedule(
    tmp_path: Path, alertmanager: str, require_service: Callable[[str, str], NoReturn]
) -> None:
    database = f"sqlite:///{tmp_path / 'esup.db'}"
    alerts = f"{{alertmanager_url: '{alertmanager}', interval_seconds: 1}}"
    with running_server(tmp_path, database, "alerts", alerts=alerts) as server:  # type: ignore[arg-type]
        engine = make_engine(database)
        try:
            token = TokenStore(engine).create(AGENT, DEPARTMENTS)
        finally:
            engine.dispose()
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            seed(client, token, datetime.now(UTC))

        wait_for(lambda: len(_cases(alertmanager)) == 5, "the server's alerts", timeout=30)

        assert ("fgw", "R1", "red") in _cases(alertmanager)
        # The job's log line counts the alerts each run posted, firing and resolved.
        assert re.search(r"alertmanager: changed=\d+ slot=\d+ pid=\d+", server.output())
        exposition = httpx.get(f"{server.base_url}/metrics", timeout=30).text
        ran = re.search(
            r'esup_scheduled_job_runs_total\{outcome="ran",task="alertmanager"\} (\S+)', exposition
        )
        assert ran is not None, exposition
        assert float(ran.group(1)) >= 1
        # The whole exposition of a running server, job counts included, passes promtool.
        promtool = find_binary(require_service, "promtool")
        checked = subprocess.run(
            [promtool, "check", "metrics"],
            input=exposition,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert (checked.returncode, checked.stdout, checked.stderr) == (0, "", "")
