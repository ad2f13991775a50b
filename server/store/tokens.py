"""`TokenStore`: the bearer tokens agents send, one per agent, kept only as their SHA-256.

    create(agent, departments) -> token   a new random token, shown this once
    verify(token) -> Grant | None         who holds it and for which departments
    list() -> [TokenInfo]                 every agent's token, live or revoked
    revoke(agent)                         the agent's token stops working at once

A token is ``secrets.token_urlsafe(32)`` (256 random bits), so a plain
SHA-256 is enough to keep it: nobody can guess one from its hash.
"""

from __future__ import annotations

import builtins
import hashlib
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from sqlalchemy import Engine, Row, select

from server.errors import AgentExistsError, TokenRevokedError, UnknownAgentError
from server.store import tables

__all__ = ["AGENT_NAME_MAX", "Grant", "TokenInfo", "TokenStore", "token_hash"]

#: The longest agent name, as long as the tables' agent columns.
AGENT_NAME_MAX: Final = 128


def _utcnow() -> datetime:
    return datetime.now(UTC)


def token_hash(token: str) -> str:
    """The hex SHA-256 of `token`'s UTF-8 bytes: what the store keeps."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Grant:
    """What a live token allows: the agent that holds it and the departments it reports for."""

    agent: str
    departments: frozenset[str]


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """One agent's token as listed (never the token itself)."""

    agent: str
    departments: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None

    @property
    def live(self) -> bool:
        return self.revoked_at is None


def _departments(codes: Iterable[str]) -> tuple[str, ...]:
    cleaned = sorted({c.strip() for c in codes})
    if not cleaned or "" in cleaned:
        raise ValueError(f"a token needs one or more non-empty department codes, not {cleaned!r}")
    bad = [c for c in cleaned if "," in c]
    if bad:
        raise ValueError(f"department code {bad[0]!r} contains a comma")
    return tuple(cleaned)


class TokenStore:
    """Agent tokens on `engine` (migrated to the head); `now` stamps creation and revocation."""

    def __init__(self, engine: Engine, *, now: Callable[[], datetime] = _utcnow) -> None:
        self.engine = engine
        self.now = now
        # `verify` reads one row with every ingest request: in autocommit mode, without
        # the BEGIN and ROLLBACK round trips of a transaction around it (PostgreSQL).
        self._reader = engine.execution_options(isolation_level="AUTOCOMMIT")

    def create(self, agent: str, departments: Iterable[str]) -> str:
        """A new token for `agent`, allowed to report for `departments`; returned only here.

        An agent whose token was revoked gets a new one in its place. Raises
        `AgentExistsError` when the agent holds a live token, and ValueError
        for a blank or over-long agent name or an empty department list.
        """
        if not agent.strip() or len(agent) > AGENT_NAME_MAX:
            raise ValueError(
                f"an agent name is 1-{AGENT_NAME_MAX} characters and not blank, not {agent!r}"
            )
        codes = ",".join(_departments(departments))
        token = secrets.token_urlsafe(32)
        t = tables.tokens.c
        values = {
            "departments": codes,
            "token_sha256": token_hash(token),
            "created_at": self.now(),
            "revoked_at": None,
        }
        with self.engine.begin() as connection:
            existing = connection.execute(
                select(t.revoked_at).where(t.agent == agent).with_for_update()
            ).first()
            if existing is None:
                connection.execute(tables.tokens.insert(), {"agent": agent, **values})
            elif existing.revoked_at is None:
                raise AgentExistsError(agent)
            else:
                connection.execute(tables.tokens.update().where(t.agent == agent), values)
        return token

    def verify(self, token: str) -> Grant | None:
        """The grant of a live `token`; None for a token that is unknown or revoked."""
        t = tables.tokens.c
        query = select(t.agent, t.departments).where(
            t.token_sha256 == token_hash(token), t.revoked_at.is_(None)
        )
        with self._reader.connect() as connection:
            row = connection.execute(query).first()
        if row is None:
            return None
        return Grant(row.agent, frozenset(row.departments.split(",")))

    def list(self) -> builtins.list[TokenInfo]:
        """Every agent that has a token, live or revoked, by agent name."""
        t = tables.tokens.c
        query = select(t.agent, t.departments, t.created_at, t.revoked_at).order_by(t.agent)
        with self.engine.connect() as connection:
            return [_info(row) for row in connection.execute(query)]

    def revoke(self, agent: str) -> None:
        """Stop `agent`'s token from working, at once.

        Raises `UnknownAgentError` when the agent never had a token and
        `TokenRevokedError` when it is revoked already.
        """
        t = tables.tokens.c
        with self.engine.begin() as connection:
            row = connection.execute(
                select(t.revoked_at).where(t.agent == agent).with_for_update()
            ).first()
            if row is None:
                raise UnknownAgentError(agent)
            if row.revoked_at is not None:
                raise TokenRevokedError(agent, row.revoked_at)
            connection.execute(
                tables.tokens.update().where(t.agent == agent), {"revoked_at": self.now()}
            )


def _info(row: Row[tuple[str, str, datetime, datetime | None]]) -> TokenInfo:
    return TokenInfo(row.agent, tuple(row.departments.split(",")), row.created_at, row.revoked_at)
