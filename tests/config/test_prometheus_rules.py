"""config/prometheus: the alerting rules pass `promtool check rules`, and every alert
has `promtool test rules` tests that see it fire and see it stay quiet."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml

PROMETHEUS = Path(__file__).resolve().parents[2] / "config" / "prometheus"
RULES = PROMETHEUS / "esup-rules.yml"
RULE_TESTS = sorted((PROMETHEUS / "tests").glob("*_test.yml"))


@pytest.fixture
def promtool(require_service: Callable[[str, str], NoReturn]) -> str:
    found = shutil.which("promtool")
    if found is None:
        require_service("promtool", "not on PATH (Debian package prometheus)")
    return found


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), capture_output=True, text=True, timeout=120, check=False, cwd=PROMETHEUS
    )


def _alerts() -> list[str]:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule["alert"] for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def test_promtool_check_rules_passes(promtool: str) -> None:
    checked = _run(promtool, "check", "rules", str(RULES))

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(_alerts())} rules found" in checked.stdout


def test_promtool_test_rules_passes(promtool: str) -> None:
    assert RULE_TESTS, "no rule tests found"
    tested = _run(promtool, "test", "rules", *map(str, RULE_TESTS))

    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert tested.stdout.count("SUCCESS") == len(RULE_TESTS)


def test_every_alert_is_tested_firing_and_quiet() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS:
        doc: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
        for case in doc["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])

    alerts = set(_alerts())
    assert alerts - firing == set(), "alerts never seen firing in a test"
    assert alerts - quiet == set(), "alerts never seen quiet in a test"
