"""`OperatorStore`: bearer tokens of the people who feed and decide scores, by role.

    create(name, role, department=None) -> token    shown this once; only the SHA-256 is kept
    verify(token) -> Operator | None                a live token's holder
    revoke(name)

Roles (docs/scores.md, "Authorisation"):

    office       the evaluation office: posts inputs, closes and restates periods
    supervisor   decides appeals (upholds or rejects them)
    department   files appeals against its own department's cards only

Agent tokens (server/store/tokens.py) are a separate kind and grant none of this.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from sqlalchemy import Engine, select

from casework.errors import EsupError
from server.store.scoretables import score_operators
from server.store.tokens import token_hash

__all__ = ["ROLES", "Operator", "OperatorError", "OperatorStore"]

ROLES: Final = ("office", "supervisor", "department")


def _utcnow() -> datetime:
    return datetime.now(UTC)


class OperatorError(EsupError, ValueError):
    """An operator that cannot be created or revoked as asked."""


@dataclass(frozen=True, slots=True)
class Operator:
    name: str
    role: str
    department: str | None


class OperatorStore:
    """Operator tokens on `engine`; `now` stamps creation and revocation."""

    def __init__(self, engine: Engine, *, now: Callable[[], datetime] = _utcnow) -> None:
        self.engine = engine
        self.now = now

    def create(self, name: str, role: str, department: str | None = None) -> str:
        """A new token for `name` in `role`; a department operator names its department."""
        if not name.strip() or len(name) > 128:
            raise OperatorError(f"An operator name is 1-128 characters, not {name!r}.")
        if role not in ROLES:
            raise OperatorError(f"Unknown role {role!r}; roles are {', '.join(ROLES)}.")
        if (role == "department") != (department is not None):
            raise OperatorError(
                "A department operator names its department (--department), and only it does."
            )
        token = secrets.token_urlsafe(32)
        o = score_operators.c
        with self.engine.begin() as connection:
            row = connection.execute(select(o.revoked_at).where(o.name == name)).first()
            values = {
                "role": role,
                "department": department,
                "token_sha256": token_hash(token),
                "created_at": self.now(),
                "revoked_at": None,
            }
            if row is None:
                connection.execute(score_operators.insert(), {"name": name, **values})
            elif row.revoked_at is None:
                raise OperatorError(f"Operator {name!r} already has a live token; revoke it first.")
            else:
                connection.execute(score_operators.update().where(o.name == name), values)
        return token

    def verify(self, token: str) -> Operator | None:
        o = score_operators.c
        with self.engine.connect() as connection:
            row = connection.execute(
                select(o.name, o.role, o.department).where(
                    o.token_sha256 == token_hash(token), o.revoked_at.is_(None)
                )
            ).first()
        return None if row is None else Operator(row.name, row.role, row.department)

    def revoke(self, name: str) -> None:
        o = score_operators.c
        with self.engine.begin() as connection:
            done = connection.execute(
                score_operators.update().where(o.name == name, o.revoked_at.is_(None)),
                {"revoked_at": self.now()},
            ).rowcount
        if not done:
            raise OperatorError(f"Operator {name!r} has no live token to revoke.")
