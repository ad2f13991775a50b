"""config/alertmanager/alertmanager.yml passes `amtool check-config` and routes as documented."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import yaml

CONFIG = Path(__file__).resolve().parents[2] / "config" / "alertmanager" / "alertmanager.yml"


def test_amtool_check_config_passes(require_service: Callable[[str, str], NoReturn]) -> None:
    amtool = shutil.which("amtool")
    if amtool is None:
        require_service("amtool", "not on PATH (Debian package prometheus-alertmanager)")

    checked = subprocess.run(
        [amtool, "check-config", str(CONFIG)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


def test_case_alerts_group_by_department_and_red_inhibits_yellow() -> None:
    doc = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    case_route = next(
        r for r in doc["route"]["routes"] if r["matchers"] == ['alertname="EsupCaseOverdue"']
    )
    assert case_route["group_by"] == ["department"]
    inhibit = doc["inhibit_rules"][0]
    assert 'level="red"' in inhibit["source_matchers"]
    assert 'level="yellow"' in inhibit["target_matchers"]
    assert inhibit["equal"] == ["department", "case_id"]
