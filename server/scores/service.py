"""`ScoreService`: scoring a period from the database, and closing and restating periods.

    compute(period, evidence=True) -> Scores     from the inputs and cards as they are now
    scores(period, evidence=True) -> Scores      the frozen results of a closed period (with
                                                 its restatements), else `compute`
    close(period, actor) -> Scores               freeze the results; audited
    restate(period, reason, actor) -> dict|None  a closed period whose results would change:
                                                 record before and after, then the new results
    restate_closed(reason, actor)                every closed period, e.g. after late events

A closed period's results never change silently: `scores` keeps answering the
frozen ones until a restatement, which is recorded in `score_restatements`
(per department, before and after) and in the audit trail.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, func, select

from casework.config import Deployment
from server.scores import audit
from server.scores.cardcounts import card_counts, card_evidence
from server.scores.period import Period
from server.scores.results import (
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
from server.store.scoretables import (
    score_complaints,
    score_evaluations,
    score_findings,
    score_periods,
    score_restatements,
    score_satisfaction,
)

__all__ = ["PeriodClosedError", "ScoreService"]

logger = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class PeriodClosedError(ValueError):
    """The period is closed already."""

    def __init__(self, period: str, closed_at: datetime, closed_by: str) -> None:
        super().__init__(
            f"The period {period} was closed at {closed_at.isoformat()} by {closed_by}; "
            "its results change only by restatement (esup-server period restate)."
        )


class ScoreService:
    """Scores from `engine` for `deployment`'s departments under `rules`; `now` stamps actions."""

    def __init__(
        self,
        engine: Engine,
        deployment: Deployment,
        rules: ScoreRules,
        *,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.engine = engine
        self.deployment = deployment
        self.rules = rules
        self.now = now
        self.units = tuple(Unit(d.code, d.name, d.category) for d in deployment.departments)

    def reconfigure(self, deployment: Deployment) -> None:
        """Score `deployment`'s departments from now on (a reloaded config/)."""
        self.deployment = deployment
        self.units = tuple(Unit(d.code, d.name, d.category) for d in deployment.departments)

    # -- reading the inputs ------------------------------------------------------------------

    def inputs(
        self, connection: Connection, period: Period, *, evidence: bool = True
    ) -> ScoreInputs:
        """Everything `score` reads for `period`, the year before apart."""
        zone = self.deployment.settings.zone
        s = score_satisfaction.c
        # Summed over the period's months by the database; the rows carry the period.
        satisfaction = [
            SatisfactionCount(department, str(period), platform, int(a), int(b), int(c))
            for department, platform, a, b, c in connection.execute(
                select(
                    s.department,
                    s.platform,
                    func.sum(s.satisfied),
                    func.sum(s.basically_satisfied),
                    func.sum(s.dissatisfied),
                )
                .where(s.month.in_(period.months()))
                .group_by(s.department, s.platform)
            )
        ]
        v = score_evaluations.c
        keys = [str(period), str(period.year_period())]
        evaluations: dict[tuple[str, str], Decimal] = {}
        rows = connection.execute(
            select(v.department, v.period, v.kind, v.score).where(v.period.in_(keys))
        ).all()
        # The period's own score first; a month falls back to its year's.
        for department, _key, kind, value in sorted(rows, key=lambda r: r[1] != str(period)):
            evaluations.setdefault((department, kind), Decimal(value))
        f = score_findings.c
        findings = [
            Finding(kind, record_id, department, day, Decimal(points), description, approval)
            for kind, record_id, department, day, points, description, approval in (
                connection.execute(
                    select(
                        f.kind,
                        f.record_id,
                        f.department,
                        f.day,
                        f.points,
                        f.description,
                        f.approval_ref,
                    ).where(f.day >= period.start, f.day < period.end)
                )
            )
        ]
        c = score_complaints.c
        window = self.rules.staff_ladder.window_days
        first = min(period.start, period.end.fromordinal(period.end.toordinal() - window))
        complaints = [
            Complaint(kind, record_id, department, day, staff_id)
            for kind, record_id, department, day, staff_id in connection.execute(
                select(c.kind, c.record_id, c.department, c.day, c.staff_id).where(
                    c.day >= first, c.day < period.end
                )
            )
        ]
        return ScoreInputs(
            period=period,
            units=self.units,
            satisfaction=satisfaction,
            evaluations=evaluations,
            cards=card_counts(connection, zone, period),
            card_evidence=card_evidence(connection, zone, period) if evidence else {},
            findings=findings,
            complaints=complaints,
        )

    def _previous(self, connection: Connection, period: Period) -> dict[str, Previous]:
        """Last year's finals and admonishments (frozen when that year is closed)."""
        if not period.is_year:
            return {}
        before = period.previous_year()
        frozen = self._frozen(connection, before)
        if frozen is not None:
            last = frozen
        else:
            inputs = self.inputs(connection, before, evidence=False)
            if not (inputs.satisfaction or inputs.evaluations or inputs.cards):
                return {}  # nothing was scored that year
            last = score(inputs, self.rules)
        return {d.code: Previous(d.final, "admonishment" in d.flags) for d in last.departments}

    # -- scoring -----------------------------------------------------------------------------

    def compute(self, period: Period, *, evidence: bool = True) -> Scores:
        """The period's results from the inputs and cards as they are now."""
        with self.engine.connect() as connection:
            return self._compute(connection, period, evidence=evidence)

    def _compute(self, connection: Connection, period: Period, *, evidence: bool) -> Scores:
        inputs = self.inputs(connection, period, evidence=evidence)
        previous = self._previous(connection, period)
        return score(
            ScoreInputs(**{**_fields(inputs), "previous": previous}),
            self.rules,
        )

    def _frozen(self, connection: Connection, period: Period) -> Scores | None:
        p = score_periods.c
        row = connection.execute(
            select(p.results, p.closed_at).where(p.period == str(period))
        ).first()
        if row is None:
            return None
        frozen = Scores.from_json(json.loads(row.results))
        return Scores(frozen.period, frozen.departments, frozen.staff, row.closed_at)

    def scores(self, period: Period, *, evidence: bool = True) -> Scores:
        """A closed period's frozen results with its restatements; else computed now."""
        with self.engine.connect() as connection:
            frozen = self._frozen(connection, period)
            if frozen is None:
                return self._compute(connection, period, evidence=evidence)
            r = score_restatements.c
            restatements = tuple(
                {"at": at.isoformat(), "reason": reason, "changes": json.loads(changes)}
                for at, reason, changes in connection.execute(
                    select(r.at, r.reason, r.changes).where(r.period == str(period)).order_by(r.id)
                )
            )
        return Scores(
            frozen.period, frozen.departments, frozen.staff, frozen.closed_at, restatements
        )

    # -- closing and restating ---------------------------------------------------------------

    def closed_periods(self) -> list[Period]:
        with self.engine.connect() as connection:
            rows = connection.execute(select(score_periods.c.period)).scalars()
            return sorted(Period.parse(p) for p in rows)

    def close(self, period: Period, actor: str) -> Scores:
        """Freeze the period's results as they stand; `PeriodClosedError` if closed already."""
        now = self.now()
        with self.engine.begin() as connection:
            p = score_periods.c
            row = connection.execute(
                select(p.closed_at, p.closed_by).where(p.period == str(period))
            ).first()
            if row is not None:
                raise PeriodClosedError(str(period), row.closed_at, row.closed_by)
            results = self._compute(connection, period, evidence=True)
            connection.execute(
                score_periods.insert(),
                {
                    "period": str(period),
                    "closed_at": now,
                    "closed_by": actor,
                    "results": json.dumps(results.results_json(), ensure_ascii=False),
                },
            )
            audit.record(
                connection,
                at=now,
                actor=actor,
                action="period_closed",
                subject=f"period:{period}",
                detail=f"{len(results.departments)} departments frozen",
            )
        return Scores(results.period, results.departments, results.staff, now)

    def restate(self, period: Period, reason: str, actor: str = "esup") -> dict[str, Any] | None:
        """Recompute a closed period; when its results differ, record and apply a restatement.

        Returns the restatement ({"period", "changes"}), or None when nothing changed or the
        period is open. `changes` maps each department whose result changed to its
        before and after (final, rating, rank, flags).
        """
        now = self.now()
        with self.engine.begin() as connection:
            p = score_periods.c
            row = connection.execute(
                select(p.results).where(p.period == str(period)).with_for_update()
            ).first()
            if row is None:
                return None
            before = json.loads(row.results)
            after = self._compute(connection, period, evidence=True).results_json()
            if after == before:
                return None
            changes = _changes(before, after)
            connection.execute(
                score_restatements.insert(),
                {
                    "period": str(period),
                    "at": now,
                    "reason": reason,
                    "changes": json.dumps(changes, ensure_ascii=False),
                    "before": row.results,
                },
            )
            connection.execute(
                score_periods.update().where(p.period == str(period)),
                {"results": json.dumps(after, ensure_ascii=False)},
            )
            audit.record(
                connection,
                at=now,
                actor=actor,
                action="period_restated",
                subject=f"period:{period}",
                detail=f"{reason}; {len(changes)} department(s) changed",
            )
        logger.warning(
            "restatement of closed period %s: %s; %d department(s) changed",
            period,
            reason,
            len(changes),
        )
        return {"period": str(period), "changes": changes}

    def restate_closed(self, reason: str, actor: str = "esup") -> list[dict[str, Any]]:
        """Restate every closed period whose results would change now."""
        done = []
        for period in self.closed_periods():
            restated = self.restate(period, reason, actor)
            if restated is not None:
                done.append(restated)
        return done


_SHOWN = ("final", "rating", "rank", "flags")


def _changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    old = {d["department"]: d for d in before["departments"]}
    new = {d["department"]: d for d in after["departments"]}
    changes: dict[str, Any] = {}
    for code in sorted(old.keys() | new.keys()):
        a, b = old.get(code), new.get(code)
        if a != b:
            changes[code] = {
                "before": None if a is None else {k: a[k] for k in _SHOWN},
                "after": None if b is None else {k: b[k] for k in _SHOWN},
            }
    if before.get("staff") != after.get("staff"):
        changes["staff"] = {"before": before.get("staff"), "after": after.get("staff")}
    return changes


def _fields(inputs: ScoreInputs) -> dict[str, Any]:
    return {name: getattr(inputs, name) for name in ScoreInputs.__dataclass_fields__}
