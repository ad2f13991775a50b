"""Properties of the computation, for any inputs: deductions never raise a score, a veto
means last place, voiding a card never lowers a score, the parts add up to the final."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from server.scores.period import Period
from server.scores.results import CardCount, Finding, SatisfactionCount, ScoreInputs, Unit
from server.scores.rules import PLATFORMS, ScoreRules
from server.scores.scoring import score

RULES = ScoreRules()
CODES = ("a", "b", "c", "d", "e")
CATEGORY = st.sampled_from(("government", "party_mass", "stationed"))
SCORE = st.decimals(min_value=0, max_value=100, places=2, allow_nan=False, allow_infinity=False)
POINTS = st.decimals(min_value=0, max_value=20, places=2, allow_nan=False, allow_infinity=False)
MONTH = st.integers(1, 12).map(lambda m: f"2025-{m:02d}")


@st.composite
def inputs(draw: st.DrawFn) -> ScoreInputs:
    units = tuple(Unit(c, c.upper(), draw(CATEGORY)) for c in CODES)
    evaluations = {(c, kind): draw(SCORE) for c in CODES for kind in ("superior", "service_users")}
    satisfaction = [
        SatisfactionCount(c, draw(MONTH), draw(st.sampled_from(PLATFORMS)),
                          draw(st.integers(0, 50)), draw(st.integers(0, 50)),
                          draw(st.integers(0, 50)))
        for c in CODES
    ]  # fmt: skip
    cards = [
        CardCount(draw(st.sampled_from(CODES)), draw(MONTH), draw(st.integers(0, 8)),
                  draw(st.integers(0, 3)), draw(st.integers(0, 2)))
        for _ in range(draw(st.integers(0, 8)))
    ]  # fmt: skip
    findings = [
        Finding(draw(st.sampled_from(("inspection", "fault", "bonus", "veto"))), f"R{i}",
                draw(st.sampled_from(CODES)), date(2025, draw(st.integers(1, 12)), 1),
                draw(POINTS), "", "ref")
        for i in range(draw(st.integers(0, 6)))
    ]  # fmt: skip
    return ScoreInputs(Period(2025), units, satisfaction, evaluations, cards, {}, findings)


def finals(i: ScoreInputs) -> dict[str, Decimal]:
    return {d.code: d.final for d in score(i, RULES).departments}


@settings(max_examples=150, deadline=None)
@given(inputs(), st.sampled_from(CODES), MONTH, st.sampled_from(("warning", "yellow", "red")))
def test_a_card_never_raises_a_score(i: ScoreInputs, code: str, month: str, level: str) -> None:
    extra = CardCount(code, month, **{{"warning": "warnings"}.get(level, level): 1})
    after = replace(i, cards=[*i.cards, extra])
    assert finals(after)[code] <= finals(i)[code]


@settings(max_examples=150, deadline=None)
@given(inputs(), st.sampled_from(CODES), st.sampled_from(("inspection", "fault")), POINTS)
def test_a_finding_never_raises_a_score(i: ScoreInputs, code: str, kind: str, pts: Decimal) -> None:
    extra = Finding(kind, "NEW", code, date(2025, 6, 1), pts)
    assert finals(replace(i, findings=[*i.findings, extra]))[code] <= finals(i)[code]


@settings(max_examples=150, deadline=None)
@given(inputs(), st.data())
def test_voiding_a_card_never_lowers_a_score(i: ScoreInputs, data: st.DataObject) -> None:
    if not i.cards:
        return
    k = data.draw(st.integers(0, len(i.cards) - 1))
    c = i.cards[k]
    level = data.draw(st.sampled_from([lv for lv in ("warnings", "yellow", "red")
                                       if getattr(c, lv) > 0] or ["none"]))  # fmt: skip
    if level == "none":
        return
    voided = replace(c, **{level: getattr(c, level) - 1})
    after = replace(i, cards=[*i.cards[:k], voided, *i.cards[k + 1 :]])
    assert finals(after)[c.department] >= finals(i)[c.department]


@settings(max_examples=150, deadline=None)
@given(inputs(), st.sampled_from(CODES))
def test_a_vetoed_department_ranks_last(i: ScoreInputs, code: str) -> None:
    veto = Finding("veto", "VETO", code, date(2025, 3, 3), Decimal(0))
    result = score(replace(i, findings=[*i.findings, veto]), RULES)
    vetoed = result.department(code)
    same = [d for d in result.departments if d.category == vetoed.category]
    assert vetoed.rating == "dissatisfied"
    assert all(d.rank < vetoed.rank for d in same if not d.vetoed)
    assert vetoed.rank > len([d for d in same if not d.vetoed])


@settings(max_examples=150, deadline=None)
@given(inputs())
def test_the_parts_add_up_to_the_final_score(i: ScoreInputs) -> None:
    result = score(i, RULES)
    for d in result.departments:
        assert sum((p.points for p in d.parts), Decimal(0)) == d.final
        assert [p.key for p in d.parts][-4:] == ["esupervision", "inspections", "faults", "bonuses"]
        assert d.part("esupervision").points >= -RULES.esupervision.cap.year
