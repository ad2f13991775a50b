"""The audit trail of scores: who did what, when and why; append-only.

    record(connection, at=, actor=, action=, subject=, detail=)
    trail(connection, subject) -> [AuditEntry]      oldest first

Subjects name what was acted on: ``appeal:12``, ``card:fgw/C001/yellow``,
``period:2025``, ``import:inspections``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from server.store.scoretables import score_audit

__all__ = ["AuditEntry", "record", "trail"]


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at: datetime
    actor: str
    action: str
    subject: str
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "subject": self.subject,
            "detail": self.detail,
        }


def record(
    connection: Connection, *, at: datetime, actor: str, action: str, subject: str, detail: str
) -> None:
    """Append one entry, in the caller's transaction."""
    connection.execute(
        score_audit.insert(),
        {"at": at, "actor": actor, "action": action, "subject": subject, "detail": detail},
    )


def trail(connection: Connection, *subjects: str) -> list[AuditEntry]:
    """The entries about any of `subjects`, oldest first."""
    a = score_audit.c
    query = select(a.at, a.actor, a.action, a.subject, a.detail).where(a.subject.in_(subjects))
    return [AuditEntry(*row) for row in connection.execute(query.order_by(a.id))]
