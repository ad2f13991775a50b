"""docs/metrics.md names every series the server exposes, the agent's fixed list, and every
series the alerting rules and dashboards use. (A running agent's exposition is checked against
docs/agent-monitoring.md and by promtool in tests/server/test_prometheus_dashboards.py.)"""

from __future__ import annotations

import re
from pathlib import Path

from agentseries import AGENT_SERIES

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
NAME = re.compile(r"\besup_[a-z_]+")


def documented() -> set[str]:
    return set(re.findall(r"`(esup_[a-z_]+)`", DOC))


def _used_in(paths: list[Path]) -> set[str]:
    names: set[str] = set()
    for path in paths:
        for name in NAME.findall(path.read_text(encoding="utf-8")):
            names.add(re.sub(r"_(bucket|count|sum)$", "", name))
    return names


def test_the_agent_series_are_documented() -> None:
    assert set(AGENT_SERIES) - documented() == set()


def test_the_series_rules_and_dashboards_use_are_documented() -> None:
    used = _used_in(
        [
            ROOT / "config" / "prometheus" / "esup-rules.yml",
            *sorted((ROOT / "config" / "grafana" / "dashboards").glob("*.json")),
        ]
    )
    assert used - documented() == set()


def test_the_server_series_are_documented() -> None:
    source = "\n".join(
        p.read_text(encoding="utf-8") for p in (ROOT / "server" / "metrics").glob("*.py")
    )
    names = set(re.findall(r'"(esup_[a-z_]+)"', source))
    names |= {f"{n}_total" for n in re.findall(r'CounterMetricFamily\(\s*"(esup_[a-z_]+)"', source)}
    names = {n for n in names if not n.endswith("_") and f"{n}_total" not in names}
    names |= {"esup_build_info"}
    names -= {"esup_build"}
    assert names - documented() == set()
