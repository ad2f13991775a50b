"""config/grafana: the committed dashboards are exactly what scripts/make_dashboards.py
writes, their uids are fixed, and the provisioning points at the datasource they use."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import yaml
from scriptload import load_script

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "config" / "grafana"


def _script() -> ModuleType:
    return load_script("scripts/make_dashboards.py", "make_dashboards")


def test_committed_dashboards_equal_the_script_output() -> None:
    rendered: dict[str, str] = _script().render()
    committed = {
        p.name: p.read_text(encoding="utf-8") for p in (GRAFANA / "dashboards").glob("*.json")
    }

    assert committed == rendered


def test_uids_are_fixed_and_the_department_board_has_its_variables() -> None:
    boards = {
        p.name: json.loads(p.read_text(encoding="utf-8"))
        for p in (GRAFANA / "dashboards").glob("*.json")
    }

    assert {name: b["uid"] for name, b in boards.items()} == {
        "esup-city.json": "esup-city",
        "esup-department.json": "esup-department",
        "esup-pipeline.json": "esup-pipeline",
    }
    variables = [v["name"] for v in boards["esup-department.json"]["templating"]["list"]]
    assert variables == ["department", "item"]


def test_provisioning_names_the_datasource_the_dashboards_use() -> None:
    datasources = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "esup.yml").read_text()
    )
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "esup.yml").read_text())
    uids = {
        target["datasource"]["uid"]
        for p in (GRAFANA / "dashboards").glob("*.json")
        for panel in json.loads(p.read_text(encoding="utf-8"))["panels"]
        for target in panel.get("targets", [])
    }

    assert uids == {d["uid"] for d in datasources["datasources"]} == {"esup-prometheus"}
    assert providers["providers"][0]["type"] == "file"
