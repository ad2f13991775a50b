"""`CardWriter`: a batch of cases' `cards` rows brought in line with what the clock derived.

A card (warning, yellow, red) is recorded in `cards` with the instant the clock
says it was reached, once per (case, level), and never deleted. Time passing
only adds cards. Events that arrive late can show that a recorded card was
never reached (a completion stamped before it) or was reached at another
instant (an extension): the card is then voided with the reason `SUPERSEDED`,
or its instant corrected, so the issued (unvoided) cards are always what the
case's events justify. A superseded card reached again is issued again. A card
voided for any other reason (an appeal) is left alone.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import ColumnElement, Connection, Engine, Insert, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite

from casework.clock import CARD_LEVELS
from server.store import tables
from server.store.bulk import Bulk

__all__ = ["CARD_COLUMNS", "SUPERSEDED", "CardWriter", "Cards", "Derived", "KeyFilter"]

logger = logging.getLogger(__name__)

#: Why a card was voided when the case's events, as later known, do not justify it.
SUPERSEDED: Final = "superseded: not reached given the case's events as later received"

Key = tuple[str, str]
Row = dict[str, Any]
#: A case's unvoided cards: level -> reached_at.
Cards = dict[str, datetime]
#: A case as derived: its `cases` columns and its cards.
Derived = tuple[Row, Cards]
#: Builds ``(department, case_id) IN (the keys)`` for the engine's dialect.
KeyFilter = Callable[[Any, Any, Sequence[Key]], ColumnElement[bool]]


def _insert_card(engine: Engine) -> Insert:
    """``INSERT INTO cards ... ON CONFLICT (department, case_id, level) DO NOTHING``."""
    columns = ["department", "case_id", "level"]
    name = engine.dialect.name
    if name == "postgresql":
        return postgresql.insert(tables.cards).on_conflict_do_nothing(index_elements=columns)
    if name == "sqlite":
        return sqlite.insert(tables.cards).on_conflict_do_nothing(index_elements=columns)
    raise NotImplementedError(f"esup stores cards in SQLite or PostgreSQL, not {name!r}")


#: The columns a new card row is written with.
CARD_COLUMNS: Final = ("department", "case_id", "level", "reached_at")

#: Re-dates, voids or revives one card (executemany); the WHERE names it.
_SET_CARD = (
    update(tables.cards)
    .where(tables.cards.c.department == bindparam("b_department"))
    .where(tables.cards.c.case_id == bindparam("b_case_id"))
    .where(tables.cards.c.level == bindparam("b_level"))
    .values(
        reached_at=bindparam("b_reached_at"),
        voided_at=bindparam("b_voided_at"),
        void_reason=bindparam("b_void_reason"),
    )
)


#: The cards stored for a batch's cases (`CardWriter.read`): each case's by level with their
#: instant and void reason, and its unvoided ones, level -> reached_at.
StoredCards = tuple[dict[Key, dict[str, tuple[datetime, str | None]]], dict[Key, Cards]]


class CardWriter:
    """Writes the cards of derived cases on `engine`; `among` selects rows by their keys."""

    def __init__(self, engine: Engine, among: KeyFilter) -> None:
        self.among = among
        self.insert = Bulk(engine.dialect, _insert_card(engine), CARD_COLUMNS)
        self.set = Bulk(engine.dialect, _SET_CARD)

    def read(self, connection: Connection, keys: Sequence[Key]) -> StoredCards:
        """The cards stored for `keys`: every one by level with its instant and void reason,
        and the unvoided ones, level -> reached_at (what `write` starts from)."""
        k = tables.cards.c
        stored: dict[Key, dict[str, tuple[datetime, str | None]]] = defaultdict(dict)
        before: dict[Key, Cards] = defaultdict(dict)
        if not keys:
            return stored, before
        query = select(
            k.department, k.case_id, k.level, k.reached_at, k.voided_at, k.void_reason
        ).where(self.among(k.department, k.case_id, list(keys)))
        # All rows at once: iterating fetches them one by one (psycopg: a call each).
        for department, case_id, level, reached_at, voided_at, reason in connection.execute(
            query
        ).all():
            stored[department, case_id][level] = (reached_at, reason)
            if voided_at is None:
                before[department, case_id][level] = reached_at
        return stored, before

    def write(
        self,
        connection: Connection,
        derived: dict[Key, Derived],
        now: datetime,
        read: StoredCards | None = None,
    ) -> tuple[dict[Key, Cards], dict[Key, Cards]]:
        """Bring the batch's `cards` rows in line with the clock (see the module docstring),
        from `read` (`read` of the batch's keys; read here when not given).

        Returns each case's unvoided cards before and after, level -> reached_at.
        """
        if not derived:
            return {}, {}
        stored, before = self.read(connection, list(derived)) if read is None else read
        after = {key: dict(cards) for key, cards in before.items()}
        new: list[Row] = []
        changes: list[Row] = []
        nothing: dict[str, tuple[datetime, str | None]] = {}
        for (department, case_id), (_, cards) in derived.items():
            have = stored.get((department, case_id), nothing)
            if not cards and not have:
                continue  # no card, none stored: nothing to do (most cases)
            for level in CARD_LEVELS:
                reached = cards.get(level)
                old = have.get(level)
                if reached is not None and old is None:
                    new.append(
                        {
                            "department": department,
                            "case_id": case_id,
                            "level": level,
                            "reached_at": reached,
                        }
                    )
                    after.setdefault((department, case_id), {})[level] = reached
                    continue
                if old is None:
                    continue
                old_at, reason = old
                if reached is not None and (
                    reason == SUPERSEDED or (reason is None and old_at != reached)
                ):
                    changes.append(_card_change(department, case_id, level, reached, None, None))
                    after.setdefault((department, case_id), {})[level] = reached
                elif reached is None and reason is None:
                    logger.info("card %s of case %s/%s superseded", level, department, case_id)
                    changes.append(
                        _card_change(department, case_id, level, old_at, now, SUPERSEDED)
                    )
                    after[department, case_id].pop(level, None)
        self.insert.execute(connection, new)
        self.set.execute(connection, changes)
        return before, after


def _card_change(
    department: str,
    case_id: str,
    level: str,
    reached_at: datetime,
    voided_at: datetime | None,
    reason: str | None,
) -> Row:
    return {
        "b_department": department,
        "b_case_id": case_id,
        "b_level": level,
        "b_reached_at": reached_at,
        "b_voided_at": voided_at,
        "b_void_reason": reason,
    }
