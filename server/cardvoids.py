"""Voiding a card for a reason of its own (an upheld appeal), the figures kept in step.

    void_card(connection, department, case_id, level, reason=..., at=..., zone=None) -> bool

Runs inside the caller's transaction, which must hold the projection lock
(`server.store.database.exclusive(engine, PROJECTION_LOCK_KEY)`), so that the
case's row and cards it reads are the ones it changes. The daily counts lose
the card (and, if it was the case's only yellow or red one, the days it was
overdue) in the same transaction. The projector leaves such a card voided
whatever events arrive later: only cards it voided itself (`superseded`) are
ever restored.
"""

from __future__ import annotations

import logging
from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, select, update

from server.dailycounts import COUNTED, ZONE_KEY, Tally, write
from server.store import tables

__all__ = ["void_card"]

logger = logging.getLogger(__name__)


def void_card(
    connection: Connection,
    department: str,
    case_id: str,
    level: str,
    *,
    reason: str,
    at: datetime,
    zone: tzinfo | None = None,
) -> bool:
    """Void the case's unvoided `level` card at `at` for `reason`; False when it has none.

    `zone` is the one the daily counts are kept in; by default the one they were
    built in (`server_state`); when they were never built, only the card changes
    (the first start builds them from the cards).
    """
    c = tables.cases.c
    k = tables.cards.c
    row = (
        connection.execute(
            select(*(c[name] for name in COUNTED)).where(
                c.department == department, c.case_id == case_id
            )
        )
        .mappings()
        .one_or_none()
    )
    cards = {
        lv: reached
        for lv, reached in connection.execute(
            select(k.level, k.reached_at).where(
                k.department == department, k.case_id == case_id, k.voided_at.is_(None)
            )
        )
    }
    if level not in cards:
        return False
    connection.execute(
        update(tables.cards)
        .where(k.department == department, k.case_id == case_id, k.level == level)
        .values(voided_at=at, void_reason=reason)
    )
    if zone is None:
        s = tables.server_state.c
        name = connection.execute(select(s.value).where(s.key == ZONE_KEY)).scalar_one_or_none()
        zone = None if name is None else ZoneInfo(name)
    if row is not None and zone is not None:
        tally = Tally(zone)
        tally.add_case(-1, department, row, cards)
        tally.add_case(1, department, row, {lv: t for lv, t in cards.items() if lv != level})
        write(connection, tally)
    logger.info("card %s of case %s/%s voided: %s", level, department, case_id, reason)
    return True
