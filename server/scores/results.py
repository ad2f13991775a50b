"""What scoring a period produces, and its JSON form (the feed's contract).

    ScoreInputs       everything the computation reads, loaded by service.py
    DepartmentScore   one department's parts, deductions with evidence, final, rating, rank, flags
    StaffAction       one member of staff on the complaint ladder
    Scores            a period's results; `to_json()` and `Scores.from_json()` round trip

Points are `Decimal` with two places; the JSON carries them as numbers. A
department's `final` is exactly the sum of its parts' `points` (deductions are
negative parts), so the score reads as a sum.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from casework.config import Category
from server.scores.period import Period

__all__ = [
    "CardCount",
    "CardEvidence",
    "Complaint",
    "DepartmentScore",
    "Finding",
    "Part",
    "SatisfactionCount",
    "ScoreInputs",
    "Scores",
    "StaffAction",
    "Unit",
]

CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class Unit:
    """A department as scored: code, name, category."""

    code: str
    name: str
    category: Category


@dataclass(frozen=True, slots=True)
class CardCount:
    """Unvoided cards of one department reached in one month (YYYY-MM, local)."""

    department: str
    month: str
    warnings: int = 0
    yellow: int = 0
    red: int = 0


@dataclass(frozen=True, slots=True)
class CardEvidence:
    """One unvoided card behind an e-supervision deduction."""

    department: str
    case_id: str
    level: str
    reached_at: datetime


@dataclass(frozen=True, slots=True)
class SatisfactionCount:
    """Answers of one platform's users about a department in a month (or summed: the period)."""

    department: str
    month: str
    platform: str
    satisfied: int
    basically_satisfied: int
    dissatisfied: int


@dataclass(frozen=True, slots=True)
class Finding:
    """An inspection finding, administrative fault, veto or bonus, as the office recorded it."""

    kind: str
    record_id: str
    department: str
    day: date
    points: Decimal
    description: str = ""
    approval_ref: str | None = None


@dataclass(frozen=True, slots=True)
class Complaint:
    """A valid complaint against a member of staff (`staff_id`) or a department head."""

    kind: str
    record_id: str
    department: str
    day: date
    staff_id: str | None = None


@dataclass(frozen=True, slots=True)
class Previous:
    """A department's result the year before: final score and whether it was admonished."""

    final: Decimal
    admonished: bool


@dataclass(frozen=True, slots=True)
class ScoreInputs:
    """Everything the computation reads for one period."""

    period: Period
    units: Sequence[Unit]
    satisfaction: Sequence[SatisfactionCount] = ()
    #: (department, "superior" | "service_users") -> score out of 100
    evaluations: Mapping[tuple[str, str], Decimal] = field(default_factory=dict)
    cards: Sequence[CardCount] = ()
    #: department -> its unvoided cards in the period (may be left empty: counts suffice)
    card_evidence: Mapping[str, Sequence[CardEvidence]] = field(default_factory=dict)
    findings: Sequence[Finding] = ()
    #: complaints up to the period's end, staff ones as far back as the ladder's window
    complaints: Sequence[Complaint] = ()
    #: department -> last year's result, for the leadership-adjustment rule
    previous: Mapping[str, Previous] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Part:
    """One term of a final score: a weighted part (positive) or a deduction (negative)."""

    key: str
    points: Decimal
    detail: Mapping[str, Any] = field(default_factory=dict)
    evidence: Sequence[Mapping[str, Any]] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "points": float(self.points),
            "detail": dict(self.detail),
            "evidence": [dict(e) for e in self.evidence],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Part:
        return cls(
            data["key"],
            _dec(data["points"]),
            dict(data["detail"]),
            tuple(dict(e) for e in data["evidence"]),
        )


@dataclass(frozen=True, slots=True)
class DepartmentScore:
    code: str
    name: str
    category: str
    parts: tuple[Part, ...]
    final: Decimal
    rating: str
    rank: int
    vetoed: bool
    flags: tuple[str, ...]
    growth_percent: Decimal | None = None

    def part(self, key: str) -> Part:
        return next(p for p in self.parts if p.key == key)

    def to_json(self) -> dict[str, Any]:
        return {
            "department": self.code,
            "name": self.name,
            "category": self.category,
            "rank": self.rank,
            "final": float(self.final),
            "rating": self.rating,
            "vetoed": self.vetoed,
            "flags": list(self.flags),
            "growth_percent": None if self.growth_percent is None else float(self.growth_percent),
            "parts": [p.to_json() for p in self.parts],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DepartmentScore:
        growth = data.get("growth_percent")
        return cls(
            code=data["department"],
            name=data["name"],
            category=data["category"],
            parts=tuple(Part.from_json(p) for p in data["parts"]),
            final=_dec(data["final"]),
            rating=data["rating"],
            rank=int(data["rank"]),
            vetoed=bool(data["vetoed"]),
            flags=tuple(data["flags"]),
            growth_percent=None if growth is None else _dec(growth),
        )


@dataclass(frozen=True, slots=True)
class StaffAction:
    """A member of staff with valid complaints: how many within the window, and the step."""

    staff_id: str
    department: str
    complaints: int
    records: tuple[str, ...]
    action: str
    label: str

    def to_json(self) -> dict[str, Any]:
        return {
            "staff_id": self.staff_id,
            "department": self.department,
            "complaints": self.complaints,
            "records": list(self.records),
            "action": self.action,
            "label": self.label,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StaffAction:
        return cls(
            data["staff_id"],
            data["department"],
            int(data["complaints"]),
            tuple(data["records"]),
            data["action"],
            data["label"],
        )


@dataclass(frozen=True, slots=True)
class Scores:
    """A period's results: departments by category and rank, staff on the ladder."""

    period: str
    departments: tuple[DepartmentScore, ...]
    staff: tuple[StaffAction, ...] = ()
    closed_at: datetime | None = None
    restatements: tuple[Mapping[str, Any], ...] = ()

    def department(self, code: str) -> DepartmentScore:
        return next(d for d in self.departments if d.code == code)

    def to_json(self) -> dict[str, Any]:
        return {
            "period": self.period,
            "closed_at": None if self.closed_at is None else self.closed_at.isoformat(),
            "departments": [d.to_json() for d in self.departments],
            "staff": [s.to_json() for s in self.staff],
            "restatements": [dict(r) for r in self.restatements],
        }

    def results_json(self) -> dict[str, Any]:
        """Only the results (what a closed period freezes): no closing or restatements."""
        return {
            "period": self.period,
            "departments": [d.to_json() for d in self.departments],
            "staff": [s.to_json() for s in self.staff],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Scores:
        closed = data.get("closed_at")
        return cls(
            period=data["period"],
            departments=tuple(DepartmentScore.from_json(d) for d in data["departments"]),
            staff=tuple(StaffAction.from_json(s) for s in data["staff"]),
            closed_at=None if closed is None else datetime.fromisoformat(closed),
            restatements=tuple(data.get("restatements", ())),
        )


def _dec(value: Any) -> Decimal:
    """A JSON number back to two-place Decimal (floats of two-place values are exact enough)."""
    return Decimal(str(value)).quantize(CENT)
