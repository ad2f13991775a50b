"""The scores API end to end, on SQLite and on PostgreSQL: inputs posted by the office,
cards straight in the tables, the JSON, CSV and XLSX feeds agreeing, an appeal upheld,
a period closed and then restated (never silently)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import Engine, insert, select

from casework.config import Deployment
from casework.configfiles import load_config
from server.app import create_app
from server.scores.feed import CATEGORY_SHEETS, COLUMNS, EVIDENCE_SHEET, STAFF_SHEET, read_csv
from server.scores.importer import import_rows
from server.scores.inputs import KINDS
from server.scores.operators import OperatorStore
from server.scores.period import Period
from server.scores.rules import PLATFORMS, Accountability, ScoreRules
from server.scores.service import ScoreService
from server.settings import ServerSettings
from server.store import tables

CONFIG = Path(__file__).resolve().parents[2] / "config"
NOW = datetime(2026, 1, 10, 8, tzinfo=UTC)


@pytest.fixture(scope="module")
def deployment() -> Deployment:
    return load_config(CONFIG)


@pytest.fixture
def client(migrated: Engine, deployment: Deployment) -> Iterator[TestClient]:
    app = create_app(
        ServerSettings(),
        engine=migrated,
        deployment=deployment,
        now=lambda: NOW,
        score_rules=ScoreRules(),
    )
    with TestClient(app) as test_client:
        yield test_client


def tokens(engine: Engine) -> dict[str, dict[str, str]]:
    store = OperatorStore(engine, now=lambda: NOW)
    made = {
        "office": store.create("考评办", "office"),
        "supervisor": store.create("监察科", "supervisor"),
        "fgw": store.create("发改委", "department", "fgw"),
    }
    return {who: {"Authorization": f"Bearer {t}"} for who, t in made.items()}


def case(department: str, n: int) -> dict[str, Any]:
    return {
        "department": department,
        "case_id": f"C{n:04d}",
        "item": "x",
        "state": "closed",
        "level": "completed",
        "accepted_at": datetime(2025, 1, 2, tzinfo=UTC),
        "closed_at": datetime(2025, 3, 2, tzinfo=UTC),
        "outcome": "completed",
        "anomalies": 0,
        "updated_at": NOW,
    }


def card(department: str, n: int, level: str, at: str) -> dict[str, Any]:
    return {
        "department": department,
        "case_id": f"C{n:04d}",
        "level": level,
        "reached_at": datetime.fromisoformat(at).replace(tzinfo=UTC),
    }


def seed_cards(engine: Engine) -> None:
    """fgw: three warnings in February 2025 (−3) and one yellow (−5); sw: a red (−10)."""
    with engine.begin() as connection:
        connection.execute(
            insert(tables.cases), [case("fgw", n) for n in range(1, 5)] + [case("sw", 9)]
        )
        connection.execute(
            insert(tables.cards),
            [
                card("fgw", 1, "warning", "2025-02-03 02:00"),
                card("fgw", 2, "warning", "2025-02-04 02:00"),
                card("fgw", 3, "warning", "2025-02-05 02:00"),
                card("fgw", 4, "yellow", "2025-02-06 02:00"),
                # 2025-01-31 17:00 UTC is 1 February local: counted in February.
                card("sw", 9, "red", "2025-01-31 17:00"),
            ],
        )


INPUTS: dict[str, list[dict[str, Any]]] = {
    "satisfaction": [
        {"department": "fgw", "month": "2025-02", "platform": "hotline_12345",
         "satisfied": 90, "basically_satisfied": 5, "dissatisfied": 5},
    ],
    "superior": [{"department": c, "period": "2025", "score": 90} for c in ("fgw", "jw", "sw")],
    "service_users": [
        {"department": c, "period": "2025", "score": 95} for c in ("fgw", "jw", "sw")
    ],
    "bonuses": [
        {"record_id": "B1", "department": "jw", "date": "2025-05-01", "points": "1.5",
         "approval_ref": "考评〔2025〕1号"},
    ],
    "inspections": [
        {"record_id": "I1", "department": "sw", "date": "2025-06-01", "points": 2,
         "description": "窗口无人值守"},
    ],
}  # fmt: skip


def test_scores_end_to_end(client: TestClient, migrated: Engine) -> None:
    auth = tokens(migrated)
    seed_cards(migrated)
    for kind, rows in INPUTS.items():
        answer = client.post(f"/api/v1/scores/inputs/{kind}", json=rows, headers=auth["office"])
        assert answer.status_code == 200, answer.text
        assert answer.json()["stored"] == len(rows)
        assert answer.json()["errors"] == []

    body = client.get("/api/v1/scores", params={"period": "2025"}).json()
    by_code = {d["department"]: d for d in body["departments"]}
    assert len(by_code) == 94
    fgw = by_code["fgw"]
    parts = {p["key"]: p["points"] for p in fgw["parts"]}
    # 95.00 × 80% = 76.00; 9.00; 9.50; February: 3 warnings −3, a yellow −5 → 86.50.
    assert parts["platforms"] == 76.0
    assert parts["esupervision"] == -8.0
    assert fgw["final"] == 86.5
    evidence = {(e["case_id"], e["level"]) for p in fgw["parts"] for e in p["evidence"]}
    assert ("C0004", "yellow") in evidence
    # jw (party): 95 × 80% + 90 × 20% = 94.00, bonus +1.5 → 95.50.
    assert by_code["jw"]["final"] == 95.5
    # sw (stationed): 94.00, red −10, inspection −2 → 82.00, public apology of its head.
    assert by_code["sw"]["final"] == 82.0
    assert "head_public_apology" in by_code["sw"]["flags"]

    # The department appeals its yellow card; the supervisor upholds it.
    filed = client.post(
        "/api/v1/scores/appeals",
        json={"department": "fgw", "case_id": "C0004", "level": "yellow", "reason": "停电"},
        headers=auth["fgw"],
    )
    assert filed.status_code == 201, filed.text
    appeal_id = filed.json()["id"]
    decided = client.post(
        f"/api/v1/scores/appeals/{appeal_id}/decision",
        json={"uphold": True, "reason": "供电局证明属实"},
        headers=auth["supervisor"],
    )
    assert decided.status_code == 200, decided.text
    trail = decided.json()["trail"]
    assert [(e["action"], e["actor"]) for e in trail] == [
        ("appeal_filed", "发改委"),
        ("appeal_upheld", "监察科"),
    ]
    with migrated.connect() as connection:
        voided = connection.execute(
            select(tables.cards.c.voided_at).where(tables.cards.c.case_id == "C0004")
        ).scalar_one()
    assert voided == NOW
    after = client.get("/api/v1/scores", params={"period": "2025"}).json()
    fgw_after = next(d for d in after["departments"] if d["department"] == "fgw")
    assert fgw_after["final"] == 91.5  # the yellow card's −5 is gone

    # Close the year; a late change is applied as a restatement with before and after.
    closed = client.post("/api/v1/scores/periods/2025/close", headers=auth["office"])
    assert closed.status_code == 200, closed.text
    again = client.post("/api/v1/scores/periods/2025/close", headers=auth["office"])
    assert again.status_code == 409
    fault = [{"record_id": "F1", "department": "fgw", "date": "2025-11-11", "points": 4}]
    posted = client.post("/api/v1/scores/inputs/faults", json=fault, headers=auth["office"])
    restated = posted.json()["restated"]
    assert restated[0]["changes"]["fgw"]["before"]["final"] == 91.5
    assert restated[0]["changes"]["fgw"]["after"]["final"] == 87.5
    frozen = client.get("/api/v1/scores", params={"period": "2025"}).json()
    assert frozen["closed_at"] is not None
    assert frozen["restatements"][0]["changes"]["fgw"]["after"]["final"] == 87.5
    trail = client.get("/api/v1/scores/audit", params={"subject": "period:2025"}).json()
    assert [(e["action"], e["actor"]) for e in trail] == [
        ("period_closed", "考评办"),
        ("period_restated", "考评办"),
    ]
    imports = client.get("/api/v1/scores/audit", params={"subject": "import:faults"}).json()
    assert imports[0]["detail"] == "POST: 1 rows, 1 stored, 0 rejected"


def test_feeds_agree_with_the_json(client: TestClient, migrated: Engine) -> None:
    auth = tokens(migrated)
    seed_cards(migrated)
    for kind, rows in INPUTS.items():
        client.post(f"/api/v1/scores/inputs/{kind}", json=rows, headers=auth["office"])
    body = client.get("/api/v1/scores", params={"period": "2025"}).json()
    by_code = {d["department"]: d for d in body["departments"]}

    text = client.get("/api/v1/scores.csv", params={"period": "2025"}).text
    rows = read_csv(text)
    assert len(rows) == 94
    for row in rows:
        d = by_code[row["department"]]
        assert row["final"] == Decimal(str(d["final"]))
        assert row["rank"] == d["rank"]
        for p in d["parts"]:
            assert row[p["key"]] == Decimal(str(p["points"]))

    answer = client.get("/api/v1/scores.xlsx", params={"period": "2025"})
    book = load_workbook(io.BytesIO(answer.content))
    titles = [f"{t} 2025" for t in CATEGORY_SHEETS.values()]
    assert book.sheetnames == [*titles, EVIDENCE_SHEET, STAFF_SHEET]
    headers = [h for h, k in COLUMNS if k != "category"]
    seen = 0
    for title in titles:
        sheet = book[title]
        assert sheet.freeze_panes == "A2"
        assert [c.value for c in sheet[1]] == headers
        for values in sheet.iter_rows(min_row=2, values_only=True):
            row = dict(zip(headers, values, strict=True))
            d = by_code[row["部门代码"]]
            assert (row["排名"], row["最终得分"]) == (d["rank"], d["final"])
            seen += 1
    assert seen == 94
    evidence = list(book[EVIDENCE_SHEET].iter_rows(min_row=2, values_only=True))
    assert ("fgw", "市发展和改革委员会", "电子监察扣分", "C0004", "yellow") in [
        tuple(r[:5]) for r in evidence
    ]


def test_authorisation(client: TestClient, migrated: Engine) -> None:
    auth = tokens(migrated)
    rows = INPUTS["superior"]
    assert client.post("/api/v1/scores/inputs/superior", json=rows).status_code == 401
    denied = client.post("/api/v1/scores/inputs/superior", json=rows, headers=auth["fgw"])
    assert denied.status_code == 403
    seed_cards(migrated)
    other = client.post(
        "/api/v1/scores/appeals",
        json={"department": "sw", "case_id": "C0009", "level": "red", "reason": "x"},
        headers=auth["fgw"],
    )
    assert other.status_code == 403
    missing = client.post(
        "/api/v1/scores/appeals",
        json={"department": "fgw", "case_id": "C0001", "level": "red", "reason": "x"},
        headers=auth["fgw"],
    )
    assert missing.status_code == 404
    bad = client.get("/api/v1/scores", params={"period": "2025-13"})
    assert bad.status_code == 422
    assert "2025-13" in bad.json()["reason"]


def test_bad_rows_are_named_and_good_rows_go_in(client: TestClient, migrated: Engine) -> None:
    auth = tokens(migrated)
    rows = [
        {"department": "fgw", "period": "2025", "score": 90},
        {"department": "nope", "period": "2025", "score": 90},
        {"department": "jw", "period": "2025", "score": "ninety"},
    ]
    answer = client.post("/api/v1/scores/inputs/superior", json=rows, headers=auth["office"])
    report = answer.json()
    assert report["stored"] == 1
    assert [(e["row"], e["column"], e["value"]) for e in report["errors"]] == [
        (2, "department", "nope"),
        (3, "score", "ninety"),
    ]


def test_second_year_reads_the_closed_year(migrated: Engine, deployment: Deployment) -> None:
    """2024 closed with fgw admonished at 80.00; 2025 at 82.00 grows 2.5% < 5%."""

    def post(kind: str, rows: list[dict[str, Any]]) -> None:
        report = import_rows(
            migrated, KINDS[kind], enumerate(rows, 1), departments={"fgw", "jyj", "kjj", "gxj"},
            platforms=PLATFORMS, now=NOW,
        )  # fmt: skip
        assert report.errors == []

    scores = {"2024": 80, "2025": 82}
    for year, value in scores.items():
        for kind in ("superior", "service_users"):
            post(kind, [{"department": "fgw", "period": year, "score": value}])
        post("satisfaction", [{"department": "fgw", "month": f"{year}-06",
                               "platform": "media", "satisfied": value,
                               "basically_satisfied": 0, "dissatisfied": 100 - value}])  # fmt: skip
    # The other departments have no inputs (0 points): every one of the category counts
    # as "bottom" here, so that fgw at 80.00 (基本满意) is admonished.
    rules = ScoreRules(accountability=Accountability(bottom=94))
    service = ScoreService(migrated, deployment, rules, now=lambda: NOW)
    closed = service.close(Period(2024), "考评办").department("fgw")
    assert closed.final == Decimal("80.00")
    assert "admonishment" in closed.flags
    now = service.scores(Period(2025)).department("fgw")
    assert now.growth_percent == Decimal("2.50")
    assert "leadership_adjustment" in now.flags
