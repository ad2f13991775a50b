"""Errors the server raises on purpose.

    EsupError (casework.errors)
    ├── DatabaseURLError (ValueError)        a database URL that cannot be used
    ├── DatabaseUnavailableError (ConnectionError)
    │                                        the database did not answer
    ├── SchemaOutOfDateError (RuntimeError)  the database lacks the current migrations
    ├── UnknownDepartmentError (ValueError)  a department code the configuration lacks
    └── TokenError                           a token operation on one agent
        ├── AgentExistsError (ValueError)    the agent already holds a live token
        ├── UnknownAgentError (LookupError)  no token was ever created for the agent
        └── TokenRevokedError (ValueError)   the agent's token is revoked already

Messages are whole sentences that name the offending value and say what to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from casework.errors import EsupError

__all__ = [
    "AgentExistsError",
    "DatabaseURLError",
    "DatabaseUnavailableError",
    "SchemaOutOfDateError",
    "TokenError",
    "TokenRevokedError",
    "UnknownAgentError",
    "UnknownDepartmentError",
]


class DatabaseURLError(EsupError, ValueError):
    """A database URL SQLAlchemy cannot read, or one for a database it has no driver for."""

    def __init__(self, url: str, problem: str) -> None:
        self.url = url
        super().__init__(
            f"Cannot use the database URL {url!r}: {problem}. Write e.g. "
            "sqlite:///var/esup.db or postgresql+psycopg://user@host:5432/esup."
        )


class DatabaseUnavailableError(EsupError, ConnectionError):
    """The database did not answer (not running, wrong host, refused login)."""

    def __init__(self, url: str, problem: str) -> None:
        self.url = url
        problem = " ".join(problem.split())
        end = "" if problem.endswith((".", "?", "!")) else "."
        super().__init__(
            f"Cannot reach the database at {url}: {problem}{end} Check that it is running "
            "and that the URL's host, port, user and database name are right."
        )


class SchemaOutOfDateError(EsupError, RuntimeError):
    """The database's tables are missing or older than this version of esup."""

    def __init__(self, url: str, current: str | None, head: str) -> None:
        self.url = url
        self.current = current
        self.head = head
        have = "has no esup tables" if current is None else f"is at revision {current!r}"
        super().__init__(
            f"The database at {url} {have}, but this esup needs revision {head!r}; "
            f"run: esup-server db upgrade --database {url}"
        )


class UnknownDepartmentError(EsupError, ValueError):
    """A department code that the configuration does not define."""

    def __init__(self, code: str, where: str, near: Sequence[str] = ()) -> None:
        self.code = code
        hint = f" Did you mean {near[0]!r}?" if near else ""
        super().__init__(f"Unknown department code {code!r}: it is not defined in {where}.{hint}")


class TokenError(EsupError):
    """A token operation that cannot be done for one agent."""

    def __init__(self, agent: str, message: str) -> None:
        self.agent = agent
        super().__init__(message)


class AgentExistsError(TokenError, ValueError):
    """The agent already holds a live token; one agent has one token."""

    def __init__(self, agent: str) -> None:
        super().__init__(
            agent,
            f"Agent {agent!r} already has a token. Revoke it first "
            f"(esup-server token revoke --agent {agent}), then create a new one.",
        )


class UnknownAgentError(TokenError, LookupError):
    """No token was ever created for the agent."""

    def __init__(self, agent: str) -> None:
        super().__init__(
            agent,
            f"No token was ever created for agent {agent!r}; "
            "esup-server token list shows the agents that have one.",
        )


class TokenRevokedError(TokenError, ValueError):
    """The agent's token was revoked already."""

    def __init__(self, agent: str, revoked_at: datetime) -> None:
        self.revoked_at = revoked_at
        super().__init__(
            agent,
            f"The token of agent {agent!r} was already revoked at "
            f"{revoked_at.isoformat()}; create a new one with esup-server token create.",
        )
