"""What the demo reads back from the server and prints: figures, cards, overdue, scores.

    read_figures(client, start, end, departments) -> {"all": {...}, "departments": {...}}
    disagreements(read, expected) -> ["departments.fgw.late: server 12, simulator 11", ...]
    print_report(console, report)

Everything printed comes from the server's API (``GET /api/v1/rates`` and
``GET /api/v1/scores``); the simulator's own count is only compared with it.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Final

import httpx
from rich.console import Console
from rich.table import Table

from esup.simfigures import COUNTS

__all__ = ["COMPARED", "disagreements", "print_report", "read_figures"]

#: The counts compared with the simulator's and shown per department: all of them.
COMPARED: Final = COUNTS
_CATEGORY_NAMES: Final = {
    "government": "政府部门",
    "party_mass": "党群部门",
    "stationed": "驻市单位",
}
#: The labels of the scoring feed (docs/scores.md, "The feed").
_FLAG_NAMES: Final = {
    "vetoed": "一票否决",
    "admonishment": "诫勉谈话",
    "leadership_adjustment": "调整领导班子",
    "head_personal_apology": "负责人当面道歉",
    "head_public_apology": "负责人公开道歉",
    "missing_platforms": "缺六大平台评价",
    "missing_superior": "缺上级评价",
    "missing_service_users": "缺服务对象评价",
}
_RATINGS: Final = {"satisfied": "满意", "basically_satisfied": "基本满意", "dissatisfied": "不满意"}


def _get(client: httpx.Client, path: str, **params: str) -> Any:
    response = client.get(path, params=params)
    response.raise_for_status()
    return response.json()


def read_figures(
    client: httpx.Client, start: date, end: date, departments: list[str]
) -> dict[str, Any]:
    """The period's figures city-wide and per department, from ``GET /api/v1/rates``."""
    period = {"start": start.isoformat(), "end": end.isoformat()}
    result: dict[str, Any] = {"all": _get(client, "/api/v1/rates", **period), "departments": {}}
    for code in departments:
        result["departments"][code] = _get(client, "/api/v1/rates", **period, department=code)
    return result


def disagreements(read: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    """Every count where the server's figures differ from the simulator's summary figures
    (``Simulation.figures.to_json()``); a department the simulator has no case of expects 0."""
    problems = []
    scopes = [("all", read["all"], expected["all"])] + [
        (f"departments.{code}", got, expected["departments"].get(code, {}))
        for code, got in read["departments"].items()
    ]
    for scope, got, want in scopes:
        for name in COMPARED:
            wanted = want.get(name, 0)
            if got[name] != wanted:
                problems.append(f"{scope}.{name}: server {got[name]}, simulator {wanted}")
    return problems


def _rate(rate: dict[str, Any]) -> str:
    return "—" if rate["value"] is None else f"{rate['value']:.1%}"


def print_report(console: Console, report: dict[str, Any]) -> None:
    """Print the demo's tables from `report` (the demo's summary document)."""
    figures = report["figures"]
    city = figures["all"]
    names = report["department_names"]
    table = Table(title=f"The year {report['year']}, city-wide (GET /api/v1/rates)")
    for column in ("received", "carried over", "completed", "completion rate",
                   "on time rate", "open at end", "overdue at end", "invalid"):  # fmt: skip
        table.add_column(column, justify="right")
    table.add_row(
        f"{city['received']:,}",
        f"{city['carried_over']:,}",
        f"{city['completed']:,}",
        f"{_rate(city['completion_rate'])} ({city['completed']:,} / "
        f"{city['completion_rate']['denominator']:,})",
        _rate(city["on_time_rate"]),
        f"{city['open_at_end']:,}",
        f"{city['overdue_at_end']:,}",
        f"{city['invalid']:,}",
    )
    console.print(table)

    per = Table(title="Per department")
    per.add_column("code")
    per.add_column("department", no_wrap=True, max_width=16, overflow="ellipsis")
    for column in ("received", "carried over", "completed", "completion",
                   "on time", "late", "open at end", "warnings", "yellow", "red"):  # fmt: skip
        per.add_column(column, justify="right")
    for code, f in figures["departments"].items():
        per.add_row(
            code,
            names.get(code, ""),
            f"{f['received']:,}",
            f"{f['carried_over']:,}",
            f"{f['completed']:,}",
            _rate(f["completion_rate"]),
            _rate(f["on_time_rate"]),
            f"{f['late']:,}",
            f"{f['open_at_end']:,}",
            f"{f['warnings']:,}",
            f"{f['yellow_cards']:,}",
            f"{f['red_cards']:,}",
        )
    console.print(per)

    overdue = sorted(
        figures["departments"].items(),
        key=lambda kv: (-kv[1]["overdue_at_end"], -kv[1]["late"], kv[0]),
    )[:10]
    worst = Table(title="Most overdue departments (open with a yellow or red card at year end)")
    worst.add_column("code")
    worst.add_column("department", no_wrap=True)
    for column in ("overdue at end", "late in the year", "red cards"):
        worst.add_column(column, justify="right")
    for code, f in overdue:
        worst.add_row(code, names.get(code, ""), f"{f['overdue_at_end']:,}",
                      f"{f['late']:,}", f"{f['red_cards']:,}")  # fmt: skip
    console.print(worst)

    cards = Table(title="Cards issued in the year")
    for column in ("warnings (预警)", "yellow cards (黄牌)", "red cards (红牌)"):
        cards.add_column(column, justify="right")
    cards.add_row(f"{city['warnings']:,}", f"{city['yellow_cards']:,}", f"{city['red_cards']:,}")
    console.print(cards)

    scores = report["scores"]
    for category, label in _CATEGORY_NAMES.items():
        ranked = sorted(
            (d for d in scores["departments"] if d["category"] == category),
            key=lambda d: (d["rank"], d["department"]),
        )
        if not ranked:
            continue
        t = Table(title=f"Scores {scores['period']}: {label} ({category}), ranked")
        for column in ("rank", "code", "department", "final", "growth", "rating", "flags"):
            t.add_column(column, justify="right" if column in ("rank", "final", "growth")
                         else "left", no_wrap=column != "flags")  # fmt: skip
        for d in ranked:
            flags = [_FLAG_NAMES.get(flag, flag) for flag in d["flags"]]
            if d["vetoed"] and "vetoed" not in d["flags"]:
                flags.insert(0, _FLAG_NAMES["vetoed"])
            growth = "—" if d.get("growth_percent") is None else f"{d['growth_percent']:+.2f}%"
            t.add_row(str(d["rank"]), d["department"], d["name"], f"{d['final']:.2f}", growth,
                      _RATINGS.get(d["rating"], d["rating"]), "、".join(flags))  # fmt: skip
        console.print(t)
    if scores.get("staff"):
        staff = Table(title="Staff on the complaint ladder (首问/首办责任)")
        for column in ("staff", "department", "complaints", "action"):
            staff.add_column(column)
        for s in scores["staff"]:
            staff.add_row(s["staff_id"], s["department"], str(s["complaints"]), s["label"])
        console.print(staff)
