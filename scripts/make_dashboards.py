"""Write esup's Grafana dashboards (config/grafana/dashboards/*.json) from the code below.

    python scripts/make_dashboards.py [--out DIR] [--check]

Three dashboards with fixed uids: the city overview, a department drill-down
(variables `department` and `item`) and pipeline health. Every query is
PromQL on the series of docs/metrics.md. Server series are read from a store
every replica shares, so each replica reports the same value: queries take
``max by (...)`` over replicas, never ``sum``. With ``--check`` nothing is
written; the exit status is 1 when a committed file differs from what this
script makes (tests/config/test_dashboards.py checks the same).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "config" / "grafana" / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "esup-prometheus"}
WIDTH = 24  # Grafana's grid is 24 columns wide

Panel = dict[str, Any]


class Layout:
    """Places panels left to right, starting a new row when one does not fit."""

    def __init__(self) -> None:
        self.x = self.y = self.row_height = 0
        self.next_id = 1

    def place(self, panel: Panel, w: int, h: int) -> Panel:
        if self.x + w > WIDTH:
            self.x, self.y, self.row_height = 0, self.y + self.row_height, 0
        panel["gridPos"] = {"x": self.x, "y": self.y, "w": w, "h": h}
        panel["id"] = self.next_id
        self.next_id += 1
        self.x += w
        self.row_height = max(self.row_height, h)
        return panel


def target(expr: str, legend: str = "", *, instant: bool = False) -> dict[str, Any]:
    found: dict[str, Any] = {"datasource": DATASOURCE, "expr": expr, "refId": "A"}
    if legend:
        found["legendFormat"] = legend
    if instant:
        found["instant"] = True
        found["range"] = False
    return found


def panel(
    kind: str, title: str, *targets: dict[str, Any], unit: str = "", description: str = ""
) -> Panel:
    for i, t in enumerate(targets):
        t["refId"] = chr(ord("A") + i)
    found: Panel = {
        "type": kind,
        "title": title,
        "datasource": DATASOURCE,
        "targets": list(targets),
        "fieldConfig": {"defaults": {"unit": unit} if unit else {}, "overrides": []},
        "options": {},
    }
    if description:
        found["description"] = description
    return found


def text(title: str, content: str) -> Panel:
    return {"type": "text", "title": title, "options": {"mode": "markdown", "content": content}}


def variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": f"{name}-values"},
        "definition": query,
        "refresh": 1,
        "sort": 1,
        "includeAll": False,
        "multi": False,
    }


def dashboard(
    uid: str, title: str, panels: list[tuple[Panel, int, int]], variables: list[dict[str, Any]]
) -> dict[str, Any]:
    layout = Layout()
    return {
        "uid": uid,
        "title": title,
        "tags": ["esup"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "1m",
        "time": {"from": "now-7d", "to": "now"},
        "templating": {"list": variables},
        "annotations": {"list": []},
        "panels": [layout.place(p, w, h) for p, w, h in panels],
    }


def city_rate(rate: str, period: str) -> str:
    """A city-wide rate: the sum of the departments' numerators over their denominators."""
    parts = [
        f'sum(max by (department) (esup_{rate}_{part}_cases{{period="{period}"}}))'
        for part in ("numerator", "denominator")
    ]
    return f"{parts[0]} / {parts[1]}"


def city() -> dict[str, Any]:
    panels = [
        (
            panel(
                "stat",
                "Completion rate, this year",
                target(city_rate("completion", "year")),
                unit="percentunit",
                description="completed / (received + carried over), every department",
            ),
            6,
            4,
        ),
        (
            panel(
                "stat",
                "On-time rate, this year",
                target(city_rate("on_time", "year")),
                unit="percentunit",
                description="(early + on time) / (completed - withdrawn)",
            ),
            6,
            4,
        ),
        (
            panel(
                "stat",
                "Completion rate, this month",
                target(city_rate("completion", "month")),
                unit="percentunit",
            ),
            6,
            4,
        ),
        (
            panel(
                "stat", "Overdue cases now", target("sum(max by (department) (esup_overdue_cases))")
            ),
            6,
            4,
        ),
        (
            panel(
                "bargauge",
                "Completion rate by department, this year",
                target(
                    'max by (department) (esup_completion_ratio{period="year"})',
                    "{{department}}",
                    instant=True,
                ),
                unit="percentunit",
            ),
            12,
            12,
        ),
        (
            panel(
                "bargauge",
                "Overdue cases by department",
                target(
                    "sort_desc(max by (department) (esup_overdue_cases))",
                    "{{department}}",
                    instant=True,
                ),
            ),
            12,
            12,
        ),
        (
            panel(
                "timeseries",
                "Cards issued per hour",
                target(
                    "sum by (level) (max by (department, level) "
                    "(increase(esup_cards_issued_total[1h])))",
                    "{{level}}",
                ),
            ),
            12,
            8,
        ),
        (
            panel(
                "timeseries",
                "Open cases by level",
                target(
                    "sum by (level) (max by (department, level) (esup_open_cases))", "{{level}}"
                ),
            ),
            12,
            8,
        ),
        (
            panel(
                "bargauge",
                "Score this year, government departments (ranked)",
                target(
                    'sort_desc(max by (department) (esup_score_points{category="government"}))',
                    "{{department}}",
                    instant=True,
                ),
            ),
            12,
            10,
        ),
        (
            panel(
                "table",
                "Rank within category, this year",
                target(
                    "sort(max by (category, department) (esup_score_rank))",
                    "{{category}} {{department}}",
                    instant=True,
                ),
            ),
            12,
            10,
        ),
    ]
    return dashboard("esup-city", "esup · city overview", panels, [])


def department() -> dict[str, Any]:
    d = '{department="$department"}'
    di = '{department="$department", item="$item"}'
    panels = [
        (
            panel(
                "stat",
                "Completion rate, this year",
                target('max(esup_completion_ratio{department="$department", period="year"})'),
                unit="percentunit",
            ),
            6,
            4,
        ),
        (
            panel(
                "stat",
                "On-time rate, this year",
                target('max(esup_on_time_ratio{department="$department", period="year"})'),
                unit="percentunit",
            ),
            6,
            4,
        ),
        (
            panel(
                "stat",
                "Completion this month (completed / to do)",
                target(
                    'max(esup_completion_numerator_cases{department="$department", '
                    'period="month"})',
                    "completed",
                ),
                target(
                    'max(esup_completion_denominator_cases{department="$department", '
                    'period="month"})',
                    "to do",
                ),
            ),
            6,
            4,
        ),
        (panel("stat", "Overdue cases now", target(f"max(esup_overdue_cases{d})")), 6, 4),
        (
            panel(
                "timeseries",
                "Open cases by level",
                target(f"max by (level) (esup_open_cases{d})", "{{level}}"),
            ),
            12,
            8,
        ),
        (
            panel(
                "timeseries",
                "Cards issued per hour",
                target(f"max by (level) (increase(esup_cards_issued_total{d}[1h]))", "{{level}}"),
            ),
            12,
            8,
        ),
        (
            panel(
                "stat",
                "Item $item: open and overdue",
                target(f"max(esup_item_open_cases{di})", "open"),
                target(f"max(esup_item_overdue_cases{di})", "overdue"),
            ),
            8,
            6,
        ),
        (
            panel(
                "table",
                "Items with overdue cases",
                target(
                    f"sort_desc(max by (item) (esup_item_overdue_cases{d}) > 0)",
                    "{{item}}",
                    instant=True,
                ),
            ),
            16,
            6,
        ),
    ]
    variables = [
        variable("department", "Department", "label_values(esup_department_info, department)"),
        variable(
            "item", "Item", 'label_values(esup_item_open_cases{department="$department"}, item)'
        ),
    ]
    return dashboard("esup-department", "esup · department", panels, variables)


def pipeline() -> dict[str, Any]:
    panels = [
        (panel("stat", "Targets up", target('up{job=~"esup-.*"}', "{{job}} {{instance}}")), 8, 4),
        (
            panel(
                "table",
                "Agents and versions",
                target("esup_agent_info", "{{agent}} {{version}}", instant=True),
            ),
            8,
            4,
        ),
        (
            panel(
                "stat",
                "Calendar known for (days)",
                target("(min(esup_calendar_covered_until_timestamp_seconds) - time()) / 86400"),
                description="After this, every Monday-Friday counts as a working day.",
            ),
            4,
            4,
        ),
        (panel("stat", "Last calendar year", target("max(esup_calendar_last_covered_year)")), 4, 4),
        (
            panel(
                "timeseries",
                "Outbox backlog (events)",
                target("esup_agent_outbox_events", "{{instance}}"),
            ),
            8,
            8,
        ),
        (
            panel(
                "timeseries",
                "Outbox fill",
                target("esup_agent_outbox_bytes / esup_agent_outbox_cap_bytes", "{{instance}}"),
                unit="percentunit",
            ),
            8,
            8,
        ),
        (
            panel(
                "stat",
                "Backpressure and dead letters",
                target("max(esup_agent_backpressure)", "backpressure"),
                target("sum(esup_agent_dead_letters)", "dead letters"),
            ),
            8,
            8,
        ),
        (
            panel(
                "timeseries",
                "Source events read per second",
                target(
                    "sum by (source, outcome) (rate(esup_agent_source_events_total[5m]))",
                    "{{source}} {{outcome}}",
                ),
            ),
            8,
            8,
        ),
        (
            panel(
                "timeseries",
                "Seconds since a source's last event",
                target("time() - esup_agent_source_last_event_timestamp_seconds", "{{source}}"),
                unit="s",
            ),
            8,
            8,
        ),
        (panel("stat", "Stale sources", target("sum(esup_agent_source_stale)")), 8, 8),
        (
            panel(
                "timeseries",
                "Deliveries per second",
                target(
                    "sum by (outcome) (rate(esup_agent_delivered_events_total[5m]))", "{{outcome}}"
                ),
                target("sum(rate(esup_agent_delivery_failures_total[5m]))", "failed posts"),
            ),
            8,
            8,
        ),
        (
            panel(
                "timeseries",
                "Seconds since the agent delivered",
                target("time() - esup_agent_last_delivery_timestamp_seconds", "agent {{instance}}"),
                target(
                    "time() - max by (agent) (esup_agent_last_seen_timestamp_seconds)",
                    "server saw {{agent}}",
                ),
                unit="s",
            ),
            8,
            8,
        ),
        (
            panel(
                "timeseries",
                "Server ingest per second",
                target("max by (outcome) (rate(esup_ingest_events_total[5m]))", "{{outcome}}"),
            ),
            8,
            8,
        ),
        (
            panel(
                "table",
                "Quarantined events by reason",
                target(
                    "max by (reason) (esup_quarantined_events_total)", "{{reason}}", instant=True
                ),
            ),
            8,
            8,
        ),
        (
            panel(
                "table",
                "Sequence gaps by agent",
                target("max by (agent) (esup_sequence_gaps_total)", "{{agent}}", instant=True),
                target(
                    "max by (agent) (esup_sequence_missing_events_total)", "{{agent}}", instant=True
                ),
            ),
            8,
            8,
        ),
        (
            panel(
                "timeseries",
                "Server request time, 95th percentile",
                target(
                    "histogram_quantile(0.95, sum by (le, handler) "
                    "(rate(esup_http_request_duration_seconds_bucket[5m])))",
                    "{{handler}}",
                ),
                unit="s",
            ),
            8,
            8,
        ),
        (
            panel(
                "timeseries",
                "Agent memory and disk",
                target("esup_agent_resident_memory_bytes", "memory {{instance}}"),
                target("esup_agent_state_disk_free_bytes", "disk free {{instance}}"),
                unit="bytes",
            ),
            8,
            8,
        ),
        (
            panel(
                "timeseries",
                "Agent CPU and open files",
                target("rate(esup_agent_cpu_seconds_total[5m])", "cpu {{instance}}"),
                target("esup_agent_open_files", "files {{instance}}"),
            ),
            8,
            8,
        ),
        (
            panel(
                "timeseries",
                "Scheduled jobs per hour",
                target(
                    "sum by (task, outcome) (increase(esup_scheduled_job_runs_total[1h]))",
                    "{{task}} {{outcome}}",
                ),
                description="The level-advancing job and the per-case alert jobs, all servers.",
            ),
            8,
            6,
        ),
        (
            panel(
                "stat",
                "Workflow process up",
                target("esup_agent_workflow_process_up", "{{instance}}"),
            ),
            8,
            6,
        ),
        (
            panel(
                "timeseries",
                "Open cases the agents see",
                target("sum by (level) (esup_agent_open_cases)", "{{level}}"),
                target("sum(rate(esup_agent_flags_total[5m]))", "flags per second"),
                target("sum(rate(esup_agent_unknown_items_total[5m]))", "unknown items per second"),
            ),
            16,
            6,
        ),
    ]
    return dashboard("esup-pipeline", "esup · pipeline health", panels, [])


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    boards = {
        "esup-city.json": city(),
        "esup-department.json": department(),
        "esup-pipeline.json": pipeline(),
    }
    return {
        name: json.dumps(board, indent=2, ensure_ascii=False) + "\n"
        for name, board in boards.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=OUT, help="folder to write (default: %(default)s)"
    )
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    stale = []
    for name, content in render().items():
        path = args.out / name
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != content:
                stale.append(name)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
    if stale:
        print(f"out of date: {', '.join(stale)}; run scripts/make_dashboards.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
