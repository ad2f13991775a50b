"""The demo's parts without processes: its evaluation inputs, its reading of the server's
counts, and its comparison with the simulator."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import httpx

from casework.configfiles import load_config
from esup.demoinputs import KINDS_IN_ORDER, PLATFORMS, evaluation_inputs
from esup.demoreport import disagreements
from esup.demowatch import read_counts
from server.scores.inputs import KINDS, check_rows
from server.scores.rules import load_rules

CONFIG = Path(__file__).resolve().parents[2] / "config"


def test_inputs_cover_every_department_and_pass_the_servers_checks() -> None:
    deployment = load_config(CONFIG)
    rows = evaluation_inputs(deployment, 2025, seed=1)
    assert list(rows) == list(KINDS_IN_ORDER)
    codes = {d.code for d in deployment.departments}
    assert len(codes) == 94
    assert len(rows["satisfaction"]) == 94 * 12 * len(PLATFORMS)
    for kind in ("satisfaction", "superior", "service_users"):
        assert {r["department"] for r in rows[kind]} == codes, kind
    for kind in ("inspections", "faults", "vetoes", "bonuses", "staff_complaints"):
        assert rows[kind], kind
    assert load_rules(CONFIG / "scores.yaml").platforms == PLATFORMS
    for kind, kind_rows in rows.items():
        good, errors = check_rows(
            KINDS[kind],
            enumerate(kind_rows, 2),
            codes,
            load_rules(CONFIG / "scores.yaml").platforms,
        )
        assert errors == [], kind
        assert len(good) == len(kind_rows)
    # One member of staff reaches the ladder's third step.
    staff = [r["staff_id"] for r in rows["staff_complaints"]]
    assert max(staff.count(s) for s in staff) == 3


def test_inputs_are_seeded_and_a_department_keeps_its_quality_across_years() -> None:
    deployment = load_config(CONFIG)
    assert evaluation_inputs(deployment, 2025, 1) == evaluation_inputs(deployment, 2025, 1)
    assert evaluation_inputs(deployment, 2025, 1) != evaluation_inputs(deployment, 2025, 2)

    def rates(year: int) -> dict[str, float]:
        good: dict[str, int] = {}
        total: dict[str, int] = {}
        for r in evaluation_inputs(deployment, year, 1)["satisfaction"]:
            answers = r["satisfied"] + r["basically_satisfied"] + r["dissatisfied"]
            good[r["department"]] = good.get(r["department"], 0) + answers - r["dissatisfied"]
            total[r["department"]] = total.get(r["department"], 0) + answers
        return {code: good[code] / total[code] for code in total}

    this, last = rates(2025), rates(2024)
    assert this != last
    assert max(abs(this[c] - last[c]) for c in this) < 0.06


def test_counts_come_from_metrics_and_rates() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/metrics":
            return httpx.Response(
                200,
                text="# HELP esup_ingest_events_total x\n# TYPE esup_ingest_events_total counter\n"
                'esup_ingest_events_total{outcome="accepted"} 1234.0\n'
                'esup_ingest_events_total{outcome="rejected"} 3.0\n',
            )
        assert request.url.params["start"] == "2024-01-01"
        return httpx.Response(200, json={"received": 400, "invalid": 2})

    with httpx.Client(transport=httpx.MockTransport(answer), base_url="http://x") as client:
        counts = read_counts(client, date(2024, 1, 1), date(2027, 1, 1))
    assert (counts.stored, counts.quarantined, counts.projected) == (1234, 3, 402)


def test_disagreements_name_scope_count_and_both_values() -> None:
    zero = dict.fromkeys(("received", "carried_over", "completed", "withdrawn", "early",
                          "on_time", "late", "open_at_end", "overdue_at_end", "warnings",
                          "yellow_cards", "red_cards", "invalid"), 0)  # fmt: skip
    read = {"all": {**zero, "received": 5}, "departments": {"fgw": {**zero, "late": 1},
                                                           "jyj": dict(zero)}}  # fmt: skip
    expected = {"all": {**zero, "received": 5}, "departments": {"fgw": dict(zero)}}
    assert disagreements(read, expected) == ["departments.fgw.late: server 1, simulator 0"]
    assert disagreements(read, {"all": zero, "departments": {}}) == [
        "all.received: server 5, simulator 0",
        "departments.fgw.late: server 1, simulator 0",
    ]
