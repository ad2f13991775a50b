"""Which per-case alerts are active, and which ended, read from the `cases` and `cards` tables.

    CaseAlert                                    one alert: a case at one card level
    active_alerts(engine, links)                 open cases with an unvoided yellow or red card
    ended_since(engine, links, since)            alerts whose case closed or card was voided
    new_cards(engine, links, after_id, upto_id)  yellow or red cards with id in (after, upto]
    highest_card_id(engine)                      the newest card's id (0 when none)

Nothing is stored about the alerts themselves: an alert is active exactly while
its case is open and its card stands, so every run can derive them again.
One alert per (case, level): a red case has a yellow and a red alert, and
Alertmanager's inhibition keeps the yellow one quiet (config/alertmanager).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final
from urllib.parse import quote

from sqlalchemy import Engine, and_, func, or_, select, tuple_
from sqlalchemy.sql import Select

from server.store import tables

__all__ = [
    "ALERTNAME",
    "ALERT_LEVELS",
    "CaseAlert",
    "Links",
    "active_alerts",
    "ended_since",
    "highest_card_id",
    "new_cards",
]

#: The `alertname` of every per-case alert.
ALERTNAME: Final = "EsupCaseOverdue"
#: The card levels that raise a per-case alert.
ALERT_LEVELS: Final[tuple[str, ...]] = ("yellow", "red")
_CHUNK: Final = 500  # cases per look-up of their handlers


@dataclass(frozen=True, slots=True)
class Links:
    """Where people reach the server: `external_url` without a trailing slash."""

    external_url: str

    def case(self, department: str, case_id: str) -> str:
        base = self.external_url.rstrip("/")
        return f"{base}/api/v1/cases/{quote(department, safe='')}/{quote(case_id, safe='')}"


@dataclass(frozen=True, slots=True)
class CaseAlert:
    """One case at one card level: what Alertmanager and the webhook are told."""

    department: str
    case_id: str
    item: str
    level: str
    reached_at: datetime
    promised_due: date | None
    legal_due: date | None
    handler: str | None
    link: str
    card_id: int = 0

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.department, self.case_id, self.level)

    def labels(self) -> dict[str, str]:
        return {
            "alertname": ALERTNAME,
            "department": self.department,
            "item": self.item,
            "level": self.level,
            "case_id": self.case_id,
        }

    def annotations(self) -> dict[str, str]:
        found = {
            "summary": f"case {self.case_id} of {self.department} ({self.item}) is {self.level}",
            "reached_at": self.reached_at.isoformat(),
            "promised_due": self.promised_due.isoformat() if self.promised_due else "",
            "legal_due": self.legal_due.isoformat() if self.legal_due else "",
            "handler": self.handler or "",
            "case_url": self.link,
        }
        return {key: value for key, value in found.items() if value}


def _base_query() -> Select[Any]:
    c, k = tables.cases.c, tables.cards.c
    return (
        select(
            k.id,
            k.department,
            k.case_id,
            c.item,
            k.level,
            k.reached_at,
            c.promised_due,
            c.legal_due,
        )
        .select_from(
            tables.cards.join(
                tables.cases, and_(c.department == k.department, c.case_id == k.case_id)
            )
        )
        .where(k.level.in_(ALERT_LEVELS))
        .order_by(k.department, k.case_id, k.level)
    )


def _handlers(engine: Engine, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """The handler named by each case's latest `step` event that names one."""
    e = tables.events.c
    found: dict[tuple[str, str], tuple[datetime, str]] = {}
    with engine.connect() as connection:
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            rows = connection.execute(
                select(e.department, e.case_id, e.at, e.body).where(
                    e.type == "step", tuple_(e.department, e.case_id).in_(chunk)
                )
            )
            for department, case_id, at, body in rows:
                handler = json.loads(body).get("handler")
                key = (str(department), str(case_id))
                if (
                    isinstance(handler, str)
                    and handler
                    and (key not in found or at >= found[key][0])
                ):
                    found[key] = (at, handler)
    return {key: handler for key, (_, handler) in found.items()}


def _alerts(engine: Engine, links: Links, query: Select[Any]) -> list[CaseAlert]:
    with engine.connect() as connection:
        rows = list(connection.execute(query))
    keys = sorted({(str(r.department), str(r.case_id)) for r in rows})
    handlers = _handlers(engine, keys) if keys else {}
    return [
        CaseAlert(
            department=r.department,
            case_id=r.case_id,
            item=r.item,
            level=r.level,
            reached_at=r.reached_at,
            promised_due=r.promised_due,
            legal_due=r.legal_due,
            handler=handlers.get((r.department, r.case_id)),
            link=links.case(r.department, r.case_id),
            card_id=int(r.id),
        )
        for r in rows
    ]


def active_alerts(engine: Engine, links: Links) -> list[CaseAlert]:
    """Every open case's unvoided yellow and red cards, by department, case and level."""
    c, k = tables.cases.c, tables.cards.c
    query = _base_query().where(c.state == "open", k.voided_at.is_(None))
    return _alerts(engine, links, query)


def ended_since(
    engine: Engine, links: Links, since: datetime, until: datetime | None = None
) -> list[CaseAlert]:
    """Alerts that ended in [since, until) (until: open-ended when None): the case no
    longer open and updated then, or the card voided then. An ended alert may be returned
    again by a later window (its case updated again); resolving twice is harmless."""
    c, k = tables.cases.c, tables.cards.c
    closed = and_(c.state != "open", c.updated_at >= since)
    voided = k.voided_at >= since
    if until is not None:
        closed = and_(closed, c.updated_at < until)
        voided = and_(voided, k.voided_at < until)
    query = _base_query().where(or_(closed, voided))
    return _alerts(engine, links, query)


def new_cards(engine: Engine, links: Links, after_id: int, upto_id: int) -> list[CaseAlert]:
    """Unvoided yellow and red cards of open cases with `after_id` < id ≤ `upto_id`."""
    c, k = tables.cases.c, tables.cards.c
    query = _base_query().where(
        c.state == "open", k.voided_at.is_(None), k.id > after_id, k.id <= upto_id
    )
    return _alerts(engine, links, query)


def highest_card_id(engine: Engine) -> int:
    """The id of the newest card, 0 when there is none."""
    with engine.connect() as connection:
        found = connection.execute(select(func.max(tables.cards.c.id))).scalar_one()
    return int(found or 0)


def by_department(alerts: Iterable[CaseAlert]) -> dict[str, list[CaseAlert]]:
    """`alerts` grouped by department code, in code order."""
    grouped: dict[str, list[CaseAlert]] = {}
    for alert in sorted(alerts, key=lambda a: a.key):
        grouped.setdefault(alert.department, []).append(alert)
    return grouped
