"""The worked example of docs/scores.md, by hand, under the reference city's default rules.

Eight departments of the three categories in 2025; every expected figure below
is worked out in the comments from the rules (weights 80/10/10 and 80/20, a
3-warning run −3, yellow −5, red −10, cap 10 a month and 10 a year,
thresholds 90 and 80, bottom three admonished, growth under 5%).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from server.scores.period import Period
from server.scores.results import (
    CardCount,
    CardEvidence,
    Complaint,
    Finding,
    Previous,
    SatisfactionCount,
    ScoreInputs,
    Scores,
    Unit,
)
from server.scores.rules import ScoreRules
from server.scores.scoring import score

D = Decimal

UNITS = (
    Unit("g1", "市一局", "government"),
    Unit("g2", "市二局", "government"),
    Unit("g3", "市三局", "government"),
    Unit("g4", "市四局", "government"),
    Unit("p1", "市一委", "party_mass"),
    Unit("p2", "市二委", "party_mass"),
    Unit("s1", "驻市一", "stationed"),
    Unit("s2", "驻市二", "stationed"),
)


def worked_inputs(s1_warnings: int = 2) -> ScoreInputs:
    sat = [
        SatisfactionCount("g1", "2025-01", "hotline_12345", 95, 3, 2),  # 98/100 → 98.00
        SatisfactionCount("g2", "2025-02", "hotline_12345", 100, 0, 10),  # 180/200 = 90.00
        SatisfactionCount("g2", "2025-05", "media", 80, 0, 10),
        SatisfactionCount("g3", "2025-03", "petitions_bureau", 50, 0, 0),  # 100.00
        SatisfactionCount("g4", "2025-04", "service_centre", 60, 25, 15),  # 85.00
        SatisfactionCount("g4", "2024-12", "service_centre", 0, 0, 100),  # another year
    ]
    evaluations = {
        ("g1", "superior"): D(90), ("g1", "service_users"): D(96),
        ("g2", "superior"): D(85), ("g2", "service_users"): D(80),
        ("g3", "superior"): D(100), ("g3", "service_users"): D(100),
        ("g4", "superior"): D(80), ("g4", "service_users"): D(80),
        ("p1", "superior"): D(90), ("p1", "service_users"): D(95),
        ("p2", "superior"): D(80), ("p2", "service_users"): D(85),
        ("s1", "superior"): D(90), ("s1", "service_users"): D(90),
        ("s2", "superior"): D(70), ("s2", "service_users"): D(70),
    }  # fmt: skip
    cards = [
        # g2, January: 7 warnings → 2 runs → 6, one yellow → 5: 11, capped at 10.
        CardCount("g2", "2025-01", warnings=7, yellow=1),
        # g2, March: one red → 10. The year: 20, capped at 10.
        CardCount("g2", "2025-03", red=1),
        # s1, February: 3 warnings were issued; one is voided by an upheld appeal.
        CardCount("s1", "2025-02", warnings=s1_warnings),
    ]
    findings = [
        Finding("bonus", "B-1", "g1", date(2025, 6, 1), D(2), "先进", "江临考评〔2025〕3号"),
        Finding("veto", "V-1", "g3", date(2025, 9, 9), D(0), "重大责任事故"),
        Finding("inspection", "I-7", "g4", date(2025, 5, 20), D("1.5"), "窗口无人"),
        Finding("fault", "F-2", "p1", date(2025, 7, 1), D(3), "超时办理"),
        Finding("fault", "F-0", "p1", date(2024, 7, 1), D(9), "last year's"),
    ]
    complaints = [
        Complaint("staff", "C-1", "g2", date(2024, 6, 1), "E1001"),
        Complaint("staff", "C-2", "g2", date(2025, 3, 1), "E1001"),
        Complaint("staff", "C-3", "p1", date(2025, 4, 1), "E2002"),
        Complaint("staff", "C-4", "s2", date(2023, 4, 1), "E3003"),  # outside, nothing new
        Complaint("head", "H-1", "p2", date(2025, 8, 1)),
    ]
    previous = {
        "g2": Previous(D("76.00"), admonished=True),  # growth 2.5/76 = 3.29% < 5%
        "g4": Previous(D("70.00"), admonished=True),  # growth 12.5/70 = 17.86%
    }
    evidence = {
        "g2": [CardEvidence("g2", "A-1", "yellow", datetime(2025, 1, 9, 2, tzinfo=UTC))],
    }
    return ScoreInputs(
        Period(2025), UNITS, sat, evaluations, cards, evidence, findings, complaints, previous
    )


@pytest.fixture(scope="module")
def result() -> Scores:
    return score(worked_inputs(), ScoreRules())


def points(result: Scores, code: str) -> dict[str, D]:
    return {p.key: p.points for p in result.department(code).parts}


def test_government_department_with_a_bonus(result: Scores) -> None:
    # 98.00 × 80% = 78.40; 90 × 10% = 9.00; 96 × 10% = 9.60; bonus +2 → 99.00, 满意, first.
    g1 = result.department("g1")
    assert points(result, "g1") == {
        "platforms": D("78.40"), "superior": D("9.00"), "service_users": D("9.60"),
        "esupervision": D(0), "inspections": D(0), "faults": D(0), "bonuses": D(2),
    }  # fmt: skip
    assert (g1.final, g1.rating, g1.rank) == (D("99.00"), "satisfied", 1)
    assert g1.part("bonuses").evidence[0]["approval_ref"] == "江临考评〔2025〕3号"
    assert g1.flags == ()


def test_capped_esupervision_deductions(result: Scores) -> None:
    # 90.00 × 80% = 72.00; 8.50; 8.00; cards −10 (capped from 20) → 78.50, 不满意, third.
    g2 = result.department("g2")
    assert points(result, "g2")["esupervision"] == D(-10)
    detail = g2.part("esupervision").detail
    assert (detail["warnings"], detail["yellow"], detail["red"]) == (7, 1, 1)
    assert detail["uncapped"] == 21.0
    assert detail["capped"] is True
    assert g2.part("esupervision").evidence[0]["case_id"] == "A-1"
    assert (g2.final, g2.rating, g2.rank) == (D("78.50"), "dissatisfied", 3)


def test_veto_forces_the_lowest_rating_and_last_place(result: Scores) -> None:
    g3 = result.department("g3")
    assert g3.final == D("100.00")  # the best score of its category, yet
    assert (g3.rating, g3.rank, g3.vetoed) == ("dissatisfied", 4, True)
    assert "vetoed" in g3.flags


def test_inspection_deduction_and_head_apology(result: Scores) -> None:
    # 85.00 × 80% = 68.00; 8.00; 8.00; inspection −1.50 → 82.50, 基本满意, second.
    g4 = result.department("g4")
    assert points(result, "g4")["inspections"] == D("-1.50")
    assert g4.part("inspections").evidence[0]["record_id"] == "I-7"
    assert (g4.final, g4.rating, g4.rank) == (D("82.50"), "basically_satisfied", 2)
    assert "head_public_apology" in g4.flags  # an inspection finding
    assert "head_public_apology" in result.department("g2").flags  # a red card


def test_second_year_growth_under_five_percent(result: Scores) -> None:
    # Bottom three of four: g4, g2, g3, all 基本满意 or worse → admonishment.
    for code in ("g2", "g3", "g4"):
        assert "admonishment" in result.department(code).flags
    assert "admonishment" not in result.department("g1").flags
    # g2 was admonished last year at 76.00: growth 3.29% < 5% → leadership adjustment.
    assert result.department("g2").growth_percent == D("3.29")
    assert "leadership_adjustment" in result.department("g2").flags
    # g4 grew 17.86%: admonished again, but no adjustment.
    assert result.department("g4").growth_percent == D("17.86")
    assert "leadership_adjustment" not in result.department("g4").flags


def test_party_and_mass_organisations(result: Scores) -> None:
    # p1: 95 × 80% = 76.00, 90 × 20% = 18.00, fault −3 (last year's −9 not) → 91.00, 满意.
    p1, p2 = result.department("p1"), result.department("p2")
    assert points(result, "p1")["platforms"] == D(0)
    assert (p1.final, p1.rating, p1.rank) == (D("91.00"), "satisfied", 1)
    # p2: 68.00 + 16.00 = 84.00, 基本满意, bottom three → admonishment; one head complaint.
    assert (p2.final, p2.rating, p2.rank) == (D("84.00"), "basically_satisfied", 2)
    assert "admonishment" in p2.flags
    assert "head_personal_apology" in p2.flags
    assert "admonishment" not in p1.flags


def test_stationed_units_and_the_upheld_appeal() -> None:
    # s1: 90 × 80% + 90 × 20% = 90.00. Three warnings in February → −3 → 87.00 基本满意;
    # the appeal voids one, two warnings make no run → 90.00 满意.
    before = score(worked_inputs(s1_warnings=3), ScoreRules()).department("s1")
    after = score(worked_inputs(s1_warnings=2), ScoreRules()).department("s1")
    assert (before.final, before.rating) == (D("87.00"), "basically_satisfied")
    assert (after.final, after.rating) == (D("90.00"), "satisfied")


def test_staff_complaint_ladder(result: Scores) -> None:
    staff = {s.staff_id: s for s in result.staff}
    assert set(staff) == {"E1001", "E2002"}  # E3003's only complaint is older than the window
    assert (staff["E1001"].complaints, staff["E1001"].action) == (2, "incompetent_training")
    assert staff["E1001"].records == ("C-1", "C-2")
    assert (staff["E2002"].complaints, staff["E2002"].action) == (1, "admonishment")


def test_parts_add_up_and_json_round_trips(result: Scores) -> None:
    for d in result.departments:
        assert sum(p.points for p in d.parts) == d.final
    assert Scores.from_json(result.to_json()) == result


def test_a_monthly_period_takes_its_months_only() -> None:
    inputs = worked_inputs()
    month = ScoreInputs(**{**{f: getattr(inputs, f) for f in inputs.__dataclass_fields__},
                           "period": Period(2025, 1)})  # fmt: skip
    g2 = score(month, ScoreRules()).department("g2")
    assert g2.part("esupervision").points == D(-10)  # January alone: 11, capped at 10
    assert "missing_platforms" in g2.flags  # no answers in January
    assert "admonishment" not in g2.flags  # accountability is annual
