"""`StateStore`: small facts the servers keep about themselves, one text value per key.

    get(key) -> str | None    the stored value, None when the key was never set
    put(key, value)           set it (insert or replace), stamped with `now()`

Kept in the `server_state` table. Today it holds one key, the fingerprint of the
configuration the cases were last computed with (see server/reconfigure.py).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Engine, Insert, select
from sqlalchemy.dialects import postgresql, sqlite

from server.store import tables

__all__ = ["StateStore"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class StateStore:
    """Values by key in the `server_state` table of `engine`'s database."""

    def __init__(self, engine: Engine, *, now: Callable[[], datetime] = _utcnow) -> None:
        self.engine = engine
        self.now = now

    def get(self, key: str) -> str | None:
        """The value stored under `key`; None when there is none."""
        s = tables.server_state.c
        with self.engine.connect() as connection:
            value: str | None = connection.execute(
                select(s.value).where(s.key == key)
            ).scalar_one_or_none()
            return value

    def put(self, key: str, value: str) -> None:
        """Store `value` under `key`, replacing any value it had."""
        row = {"key": key, "value": value, "updated_at": self.now()}
        name = self.engine.dialect.name
        statement: Insert
        if name == "postgresql":
            pg = postgresql.insert(tables.server_state).values(row)
            statement = pg.on_conflict_do_update(
                index_elements=["key"],
                set_={"value": pg.excluded.value, "updated_at": pg.excluded.updated_at},
            )
        elif name == "sqlite":
            lite = sqlite.insert(tables.server_state).values(row)
            statement = lite.on_conflict_do_update(
                index_elements=["key"],
                set_={"value": lite.excluded.value, "updated_at": lite.excluded.updated_at},
            )
        else:
            raise NotImplementedError(
                f"esup stores its state in SQLite or PostgreSQL, not {name!r}"
            )
        with self.engine.begin() as connection:
            connection.execute(statement)
