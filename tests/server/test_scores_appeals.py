"""Appeals against cards, on SQLite and PostgreSQL: who, when and why kept at every step."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, insert, select

from server.scores.appeals import AppealError, AppealStore, UnknownAppealError, UnknownCardError
from server.store import tables

FILED = datetime(2025, 3, 1, 9, tzinfo=UTC)


def seed(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(
            insert(tables.cards),
            [
                {"department": "fgw", "case_id": "A", "level": "yellow", "reached_at": FILED,
                 "voided_at": None, "void_reason": None},
                {"department": "fgw", "case_id": "B", "level": "red", "reached_at": FILED,
                 "voided_at": FILED, "void_reason": "superseded"},
            ],
        )  # fmt: skip


def test_rejected_appeal_leaves_the_card_and_keeps_the_trail(migrated: Engine) -> None:
    seed(migrated)
    clock = iter([FILED, FILED + timedelta(days=2), FILED + timedelta(days=3)])
    store = AppealStore(migrated, now=lambda: next(clock))
    appeal = store.file("fgw", "A", "yellow", "补正材料延误", "发改委")
    assert appeal.status == "pending"
    with pytest.raises(AppealError, match="already under appeal"):
        AppealStore(migrated, now=lambda: FILED).file("fgw", "A", "yellow", "again", "x")
    decided = store.decide(appeal.id, False, "理由不成立", "监察科")
    assert (decided.status, decided.decided_by) == ("rejected", "监察科")
    assert decided.decided_at == FILED + timedelta(days=2)
    assert [(e.action, e.actor, e.detail) for e in decided.trail] == [
        ("appeal_filed", "发改委", "补正材料延误"),
        ("appeal_rejected", "监察科", "理由不成立"),
    ]
    with migrated.connect() as connection:
        voided = connection.execute(
            select(tables.cards.c.voided_at).where(tables.cards.c.case_id == "A")
        ).scalar_one()
    assert voided is None
    with pytest.raises(AppealError, match="rejected already"):
        store.decide(appeal.id, True, "reconsidered", "监察科")
    assert [a.id for a in store.list(status="rejected")] == [appeal.id]


def test_what_cannot_be_appealed(migrated: Engine) -> None:
    seed(migrated)
    store = AppealStore(migrated, now=lambda: FILED)
    with pytest.raises(UnknownCardError):
        store.file("fgw", "A", "red", "no such card", "发改委")
    with pytest.raises(AppealError, match="already void"):
        store.file("fgw", "B", "red", "void already", "发改委")
    with pytest.raises(AppealError, match="reason"):
        store.file("fgw", "A", "yellow", "  ", "发改委")
    with pytest.raises(UnknownAppealError):
        store.decide(99, True, "x", "监察科")
