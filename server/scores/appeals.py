"""`AppealStore`: a department appeals against one of its cards; a supervisor decides.

    file(department, case_id, level, reason, actor) -> Appeal     the card must be in force
    decide(appeal_id, uphold, reason, actor) -> Appeal            upheld voids the card
    get(appeal_id) -> Appeal                                      with its audit trail
    list(department=None, status=None) -> [Appeal]

Every step is written to the audit trail (who, when, why) in the same
transaction as the change. An upheld appeal sets the card's `voided_at` and
`void_reason` (``appeal N upheld by WHO: WHY``); the projector leaves cards
voided for such a reason alone, and the card no longer counts in any
deduction. A card has at most one pending appeal at a time.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, select

from casework.errors import EsupError
from server.cardvoids import void_card
from server.dailycounts import PROJECTION_LOCK_KEY
from server.scores import audit
from server.store import tables
from server.store.database import exclusive
from server.store.scoretables import score_appeals

__all__ = ["Appeal", "AppealError", "AppealStore", "UnknownAppealError", "UnknownCardError"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class AppealError(EsupError, ValueError):
    """An appeal that cannot be filed or decided as asked (the message says why)."""


class UnknownCardError(AppealError, LookupError):
    def __init__(self, department: str, case_id: str, level: str) -> None:
        super().__init__(
            f"Case {department}/{case_id} has no {level} card; "
            "GET /api/v1/cases/{department}/{case_id} lists the cards it reached."
        )


class UnknownAppealError(AppealError, LookupError):
    def __init__(self, appeal_id: int) -> None:
        super().__init__(f"There is no appeal {appeal_id}; esup-server appeal list shows them.")


@dataclass(frozen=True, slots=True)
class Appeal:
    id: int
    department: str
    case_id: str
    level: str
    reason: str
    filed_by: str
    filed_at: datetime
    status: str
    decided_by: str | None = None
    decided_at: datetime | None = None
    decision_reason: str | None = None
    trail: tuple[audit.AuditEntry, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "department": self.department,
            "case_id": self.case_id,
            "level": self.level,
            "reason": self.reason,
            "filed_by": self.filed_by,
            "filed_at": self.filed_at.isoformat(),
            "status": self.status,
            "decided_by": self.decided_by,
            "decided_at": None if self.decided_at is None else self.decided_at.isoformat(),
            "decision_reason": self.decision_reason,
            "trail": [e.to_json() for e in self.trail],
        }


def _card_subject(department: str, case_id: str, level: str) -> str:
    return f"card:{department}/{case_id}/{level}"


class AppealStore:
    """Appeals on `engine`; `now` stamps every step."""

    def __init__(self, engine: Engine, *, now: Callable[[], datetime] = _utcnow) -> None:
        self.engine = engine
        self.now = now

    def file(self, department: str, case_id: str, level: str, reason: str, actor: str) -> Appeal:
        """File an appeal against the card; `AppealError` if it is voided or under appeal."""
        if not reason.strip():
            raise AppealError("An appeal states its reason; give one.")
        now = self.now()
        k, a = tables.cards.c, score_appeals.c
        with self.engine.begin() as connection:
            card = connection.execute(
                select(k.voided_at, k.void_reason).where(
                    k.department == department, k.case_id == case_id, k.level == level
                )
            ).first()
            if card is None:
                raise UnknownCardError(department, case_id, level)
            if card.voided_at is not None:
                raise AppealError(
                    f"The {level} card of case {department}/{case_id} is already void "
                    f"({card.void_reason}); there is nothing to appeal."
                )
            pending = connection.execute(
                select(a.id).where(
                    a.department == department,
                    a.case_id == case_id,
                    a.level == level,
                    a.status == "pending",
                )
            ).first()
            if pending is not None:
                raise AppealError(
                    f"The {level} card of case {department}/{case_id} is already under "
                    f"appeal {pending.id}; wait for its decision."
                )
            appeal_id = connection.execute(
                score_appeals.insert().returning(a.id),
                {
                    "department": department,
                    "case_id": case_id,
                    "level": level,
                    "reason": reason,
                    "filed_by": actor,
                    "filed_at": now,
                    "status": "pending",
                },
            ).scalar_one()
            for subject in (f"appeal:{appeal_id}", _card_subject(department, case_id, level)):
                audit.record(
                    connection,
                    at=now,
                    actor=actor,
                    action="appeal_filed",
                    subject=subject,
                    detail=reason,
                )
            return self._get(connection, int(appeal_id))

    def decide(self, appeal_id: int, uphold: bool, reason: str, actor: str) -> Appeal:
        """Uphold (voiding the card) or reject a pending appeal; `AppealError` otherwise."""
        if not reason.strip():
            raise AppealError("A decision states its reason; give one.")
        now = self.now()
        a = score_appeals.c
        # The projection lock: the card and the figures' daily counts change together.
        with exclusive(self.engine, PROJECTION_LOCK_KEY) as connection:
            row = connection.execute(
                select(a.status, a.department, a.case_id, a.level)
                .where(a.id == appeal_id)
                .with_for_update()
            ).first()
            if row is None:
                raise UnknownAppealError(appeal_id)
            if row.status != "pending":
                raise AppealError(f"Appeal {appeal_id} is {row.status} already.")
            status = "upheld" if uphold else "rejected"
            connection.execute(
                score_appeals.update().where(a.id == appeal_id),
                {
                    "status": status,
                    "decided_by": actor,
                    "decided_at": now,
                    "decision_reason": reason,
                },
            )
            if uphold:
                void_card(
                    connection,
                    row.department,
                    row.case_id,
                    row.level,
                    reason=f"appeal {appeal_id} upheld by {actor}: {reason}",
                    at=now,
                )
            card = _card_subject(row.department, row.case_id, row.level)
            for subject in (f"appeal:{appeal_id}", card):
                audit.record(
                    connection,
                    at=now,
                    actor=actor,
                    action=f"appeal_{status}",
                    subject=subject,
                    detail=reason,
                )
            return self._get(connection, appeal_id)

    def _get(self, connection: Connection, appeal_id: int) -> Appeal:
        a = score_appeals.c
        row = connection.execute(select(score_appeals).where(a.id == appeal_id)).first()
        if row is None:
            raise UnknownAppealError(appeal_id)
        trail = tuple(audit.trail(connection, f"appeal:{appeal_id}"))
        return Appeal(**row._asdict(), trail=trail)

    def get(self, appeal_id: int) -> Appeal:
        with self.engine.connect() as connection:
            return self._get(connection, appeal_id)

    def list(
        self, department: str | None = None, status: str | None = None
    ) -> builtins.list[Appeal]:
        a = score_appeals.c
        query = select(a.id).order_by(a.id)
        if department is not None:
            query = query.where(a.department == department)
        if status is not None:
            query = query.where(a.status == status)
        with self.engine.connect() as connection:
            return [self._get(connection, i) for i in connection.execute(query).scalars()]
