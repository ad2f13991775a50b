"""The computation: `score(inputs, rules) -> Scores`, a pure function.

For each department, the parts of its final score, in this order:

    platforms       overall satisfaction rate of the six platforms × 100 × weight
    superior        superior counterpart's score × weight
    service_users   service users' score × weight
    esupervision    − cards: per month, warning/yellow/red points plus the warning-run
                    rule (every `length` warnings of the month cost `points`), capped per
                    month; over a year the months' sum capped again
    inspections     − points of the inspection findings (明察暗访) dated in the period
    faults          − points of the administrative faults (行政过错) dated in the period
    bonuses         + points of the bonuses dated in the period

Every part is rounded to 0.01 (half up) and the final score is their sum. An
input a weight needs but nobody entered counts 0 and flags the department
``missing_<part>``. A veto (一票否决) forces 不满意 and the last place of the
category. Ranks are competition ranks (1, 2, 2, 4) within a category; the
accountability flags (annual periods only) follow docs/scores.md.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from server.scores.results import (
    CardCount,
    DepartmentScore,
    Part,
    ScoreInputs,
    Scores,
    StaffAction,
    Unit,
)
from server.scores.rules import RATINGS, ScoreRules

__all__ = ["PART_KEYS", "esupervision_points", "score"]

CENT = Decimal("0.01")
HUNDRED = Decimal(100)
#: The parts of a final score, in order.
PART_KEYS = (
    "platforms",
    "superior",
    "service_users",
    "esupervision",
    "inspections",
    "faults",
    "bonuses",
)
_ORDER = list(RATINGS)


def _cents(value: Decimal) -> Decimal:
    """Two places, half up; never a negative zero (adding 0 turns -0.00 into 0.00)."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP) + 0


def esupervision_points(
    months: Iterable[CardCount], rules: ScoreRules, *, year: bool
) -> tuple[Decimal, dict[str, Any]]:
    """(points deducted, detail) for a department's cards, counted per month.

    Each month: warnings × warning + ⌊warnings / run length⌋ × run points + yellow × yellow
    + red × red, at most the monthly cap; a year adds its months and caps the sum again.
    """
    e = rules.esupervision
    total = Decimal(0)
    uncapped = Decimal(0)
    counts = {"warnings": 0, "yellow": 0, "red": 0}
    for m in months:
        points = (
            m.warnings * e.warning
            + (m.warnings // e.warning_run.length) * e.warning_run.points
            + m.yellow * e.yellow
            + m.red * e.red
        )
        uncapped += points
        total += min(points, e.cap.month)
        counts["warnings"] += m.warnings
        counts["yellow"] += m.yellow
        counts["red"] += m.red
    if year:
        total = min(total, e.cap.year)
    detail = {**counts, "uncapped": float(uncapped), "capped": total < uncapped}
    return _cents(total), detail


def _rate(satisfied: int, total: int) -> float | None:
    return None if total == 0 else satisfied / total


def _weighted(raw: Decimal, weight: Decimal) -> Decimal:
    return _cents(raw * weight / HUNDRED)


def _parts(unit: Unit, inputs: ScoreInputs, rules: ScoreRules, acc: _Gathered) -> list[Part]:
    weights = rules.weights[unit.category]
    parts: list[Part] = []
    # The six platforms: counts pooled over platforms and months.
    sat = acc.satisfaction.get(unit.code, {})
    counted = rules.satisfaction.basically_satisfied_counts
    per_platform: dict[str, Any] = {}
    yes_all = total_all = 0
    for platform in rules.platforms:
        s, b, d = sat.get(platform, (0, 0, 0))
        yes, total = s + (b if counted else 0), s + b + d
        yes_all, total_all = yes_all + yes, total_all + total
        per_platform[platform] = {"satisfied": yes, "answers": total, "rate": _rate(yes, total)}
    rate = _rate(yes_all, total_all)
    raw = None if rate is None else _cents(Decimal(yes_all) * HUNDRED / Decimal(total_all))
    parts.append(
        Part(
            "platforms",
            _cents(Decimal(0) if raw is None else _weighted(raw, weights.platforms)),
            {"weight": float(weights.platforms), "raw": None if raw is None else float(raw),
             "rate": rate, "by_platform": per_platform},
        )
    )  # fmt: skip
    for key in ("superior", "service_users"):
        value = inputs.evaluations.get((unit.code, key))
        weight = getattr(weights, key)
        parts.append(
            Part(
                key,
                _cents(Decimal(0) if value is None else _weighted(value, weight)),
                {"weight": float(weight), "raw": None if value is None else float(value)},
            )
        )
    points, detail = esupervision_points(
        acc.cards.get(unit.code, ()), rules, year=inputs.period.is_year
    )
    evidence = tuple(
        {"case_id": c.case_id, "level": c.level, "reached_at": c.reached_at.isoformat()}
        for c in inputs.card_evidence.get(unit.code, ())
    )
    parts.append(Part("esupervision", _cents(-points), detail, evidence))
    for key, kind, sign in (
        ("inspections", "inspection", -1),
        ("faults", "fault", -1),
        ("bonuses", "bonus", 1),
    ):
        found = acc.findings[unit.code, kind]
        parts.append(
            Part(
                key,
                _cents(sign * sum((f.points for f in found), Decimal(0))),
                {"records": len(found)},
                tuple(
                    {
                        "record_id": f.record_id,
                        "day": f.day.isoformat(),
                        "points": float(f.points),
                        "description": f.description,
                        **({"approval_ref": f.approval_ref} if f.approval_ref else {}),
                    }
                    for f in found
                ),
            )
        )
    return parts


class _Gathered:
    """The inputs grouped by department, restricted to the period."""

    def __init__(self, inputs: ScoreInputs) -> None:
        period = inputs.period
        months = {*period.months(), str(period)}  # counts by month, or summed for the period
        self.satisfaction: dict[str, dict[str, tuple[int, int, int]]] = defaultdict(dict)
        for c in inputs.satisfaction:
            if c.month in months:
                s, b, d = self.satisfaction[c.department].get(c.platform, (0, 0, 0))
                self.satisfaction[c.department][c.platform] = (
                    s + c.satisfied,
                    b + c.basically_satisfied,
                    d + c.dissatisfied,
                )
        self.cards: dict[str, list[CardCount]] = defaultdict(list)
        for k in inputs.cards:
            if k.month in months:
                self.cards[k.department].append(k)
        self.findings: dict[tuple[str, str], list[Any]] = defaultdict(list)
        for f in sorted(inputs.findings, key=lambda f: (f.day, f.record_id)):
            if period.contains(f.day):
                self.findings[f.department, f.kind].append(f)


def _missing(unit: Unit, parts: Sequence[Part], rules: ScoreRules) -> list[str]:
    weights = rules.weights[unit.category]
    return [
        f"missing_{p.key}"
        for p in parts
        if p.key in ("platforms", "superior", "service_users")
        and getattr(weights, p.key) > 0
        and p.detail.get("raw") is None
    ]


def _worse_or_equal(rating: str, limit: str) -> bool:
    return _ORDER.index(rating) >= _ORDER.index(limit)


def _head_flags(unit: Unit, inputs: ScoreInputs, rules: ScoreRules, acc: _Gathered) -> list[str]:
    h = rules.heads
    n = sum(
        1
        for c in inputs.complaints
        if c.kind == "head" and c.department == unit.code and inputs.period.contains(c.day)
    )
    counts = {"warning": 0, "yellow": 0, "red": 0}
    for k in acc.cards.get(unit.code, ()):
        counts["warning"] += k.warnings
        counts["yellow"] += k.yellow
        counts["red"] += k.red
    violation = any(counts[level] for level in h.public_on_cards) or (
        h.public_on_inspection and bool(acc.findings[unit.code, "inspection"])
    )
    if n >= h.public_from or violation:
        return ["head_public_apology"]
    if n >= h.personal_from:
        return ["head_personal_apology"]
    return []


def _staff(inputs: ScoreInputs, rules: ScoreRules) -> tuple[StaffAction, ...]:
    ladder = rules.staff_ladder
    if not ladder.steps:
        return ()
    end = inputs.period.end
    first = end - timedelta(days=ladder.window_days)
    by_staff: dict[str, list[Any]] = defaultdict(list)
    for c in inputs.complaints:
        if c.kind == "staff" and c.staff_id and first <= c.day < end:
            by_staff[c.staff_id].append(c)
    out = []
    for staff_id, found in sorted(by_staff.items()):
        if not any(inputs.period.contains(c.day) for c in found):
            continue  # nothing new in this period: the step was decided before
        found.sort(key=lambda c: (c.day, c.record_id))
        step = [s for s in ladder.steps if s.count <= len(found)]
        if not step:
            continue
        out.append(
            StaffAction(
                staff_id,
                found[-1].department,
                len(found),
                tuple(c.record_id for c in found),
                step[-1].action,
                step[-1].label,
            )
        )
    return tuple(out)


def score(inputs: ScoreInputs, rules: ScoreRules) -> Scores:
    """Score every department in `inputs.units` for `inputs.period` under `rules`."""
    acc = _Gathered(inputs)
    vetoes = {
        f.department for f in inputs.findings if f.kind == "veto" and inputs.period.contains(f.day)
    }
    drafts: list[tuple[Unit, list[Part], Decimal, bool, list[str]]] = []
    for unit in inputs.units:
        parts = _parts(unit, inputs, rules, acc)
        final = sum((p.points for p in parts), Decimal(0))
        vetoed = unit.code in vetoes
        flags = _missing(unit, parts, rules) + (["vetoed"] if vetoed else [])
        flags += _head_flags(unit, inputs, rules, acc)
        drafts.append((unit, parts, final, vetoed, flags))

    results: list[DepartmentScore] = []
    for category in rules.weights:
        members = [d for d in drafts if d[0].category == category]
        members.sort(key=lambda d: (d[3], -d[2], d[0].code))
        n = len(members)
        rank = 0
        for position, (unit, parts, final, vetoed, flags) in enumerate(members):
            before = members[position - 1] if position else None
            if before is None or before[3] != vetoed or before[2] != final:
                rank = position + 1
            rating = rules.rating(final, vetoed)
            growth: Decimal | None = None
            previous = inputs.previous.get(unit.code)
            if previous is not None and previous.final > 0:
                growth = _cents((final - previous.final) * HUNDRED / previous.final)
            acc_rules = rules.accountability
            if (
                inputs.period.is_year
                and position >= n - acc_rules.bottom
                and _worse_or_equal(rating, acc_rules.at_or_below)
            ):
                flags = [*flags, "admonishment"]
                if (
                    previous is not None
                    and previous.admonished
                    and (growth is None or growth < acc_rules.growth_below_percent)
                ):
                    flags.append("leadership_adjustment")
            results.append(
                DepartmentScore(
                    unit.code,
                    unit.name,
                    unit.category,
                    tuple(parts),
                    final,
                    rating,
                    rank,
                    vetoed,
                    tuple(flags),
                    growth,
                )
            )
    return Scores(str(inputs.period), tuple(results), _staff(inputs, rules))
