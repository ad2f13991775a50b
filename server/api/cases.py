"""``GET /api/v1/cases/{department}/{case_id}`` and ``GET /api/v1/cases``: cases as stored.

    cases_router(engine, config, now) -> APIRouter

One case answers with everything behind its state, so any level it shows can
be traced to its events::

    {"department", "case_id",
     "events":      [wire-format v1 events, in the order they arrived],
     "state":       the case's stored row (null until the projector has run),
     "cards":       every card with its instant; voided ones too, with when and why,
     "explanation": the esup.explain/1 document of the clock at the server's now,
                    or null with "explanation_problem" saying why it cannot be built}

The listing answers ``{"cases": [stored rows], "next": cursor | null}``, ordered
by (department, case_id) as the database orders them. `next` is an opaque
cursor: pass it back as `after` for the following page; null on the last page.
Paging is by key, so cases stored while a client pages never shift a page.

Errors are answered with ``{"reason": "..."}``: 404 for an unknown case, 400 for
a query parameter out of its range (the reason names the parameter and what it
accepts). Instants are RFC 3339 in the deployment's time zone, dates local
``YYYY-MM-DD``.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from typing import Annotated, Any, Final

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import ColumnElement, Connection, Engine, and_, or_, select, true

from casework.casestate import LEVELS
from casework.clock import Clock
from casework.config import Deployment, Item, UnknownCodeError
from casework.errors import CalendarRangeError
from casework.wire import parse_event
from esup.explain import InputError, explanation, limits_for
from server.cases import INVALID
from server.liveconfig import Configuration
from server.store import tables

#: The columns of a case's stored row that the API shows: not its schedule, which only
#: the level-advancing job reads (server.schedules).
_SHOWN: Final = [column for column in tables.cases.c if column.name != "schedule"]

__all__ = [
    "DEFAULT_LIMIT",
    "LEVEL_CHOICES",
    "MAX_LIMIT",
    "STATE_CHOICES",
    "CursorError",
    "Listing",
    "ProblemModel",
    "QueryError",
    "case_document",
    "cases_router",
    "decode_cursor",
    "encode_cursor",
    "list_cases",
    "parse_listing",
]

DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1000
#: What the `state` column holds, and so what `state=` accepts.
STATE_CHOICES: Final = ("open", "closed", INVALID)
#: What the `level` column holds: an open case's level, how a closed one ended, or invalid.
LEVEL_CHOICES: Final = (*LEVELS, "suspended", "completed", "withdrawn", INVALID)


class QueryError(ValueError):
    """A query parameter the listing cannot use; the message names it and what it accepts."""

    def __init__(self, parameter: str, value: str, accepted: str) -> None:
        self.parameter = parameter
        self.value = value
        super().__init__(f"{parameter}={value!r} is not accepted: {accepted}")


class CursorError(QueryError):
    """An `after` cursor this server did not hand out (or one mangled on the way)."""

    def __init__(self, value: str) -> None:
        super().__init__(
            "after",
            value,
            "pass the 'next' value of the previous page unchanged, or leave 'after' out "
            "to start from the first page",
        )


def encode_cursor(department: str, case_id: str) -> str:
    """The opaque cursor naming the case (department, case_id): URL-safe base64 of JSON."""
    raw = json.dumps([department, case_id], ensure_ascii=False, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    """The (department, case_id) of a cursor from `encode_cursor`; `CursorError` otherwise."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw.decode())
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise CursorError(cursor) from None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(part, str) for part in value)
    ):
        raise CursorError(cursor)
    return value[0], value[1]


class ProblemModel(BaseModel):
    reason: str


def _problem(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"reason": reason}, status_code=status)


def _json_value(value: Any, tz: tzinfo) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(tz).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def _row_json(row: Mapping[str, Any], tz: tzinfo) -> dict[str, Any]:
    return {name: _json_value(value, tz) for name, value in row.items()}


@dataclass(frozen=True, slots=True)
class Listing:
    """The listing's validated parameters."""

    department: str | None
    state: str | None
    level: str | None
    items: tuple[str, ...] | None
    limit: int
    after: tuple[str, str] | None


def _choice(parameter: str, value: str | None, choices: tuple[str, ...]) -> str | None:
    if value is None or value in choices:
        return value
    raise QueryError(parameter, value, "one of " + ", ".join(repr(c) for c in choices))


def _limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_LIMIT
    accepted = f"a whole number from 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT})"
    try:
        limit = int(value)
    except ValueError:
        raise QueryError("limit", value, accepted) from None
    if not 1 <= limit <= MAX_LIMIT:
        raise QueryError("limit", value, accepted)
    return limit


def _department(deployment: Deployment, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        deployment.department(value)
    except UnknownCodeError:
        codes = [d.code for d in deployment.departments]
        close = difflib.get_close_matches(value, codes, n=3)
        hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
        raise QueryError(
            "department",
            value,
            f"a department code of this deployment; {hint}GET /api/v1/catalog lists them",
        ) from None
    return value


def _items(deployment: Deployment, value: str | None) -> tuple[str, ...] | None:
    """The item codes `item=` selects: the code itself and, for an item, its sub-items.

    A code the catalog does not know is still looked for: a case naming an
    unknown item is stored (as invalid) and must stay findable.
    """
    if value is None:
        return None
    try:
        entry = deployment.item(value)
    except UnknownCodeError:
        return (value,)
    if isinstance(entry, Item):
        return (value, *(sub.code for sub in entry.sub_items))
    return (value,)


def parse_listing(
    deployment: Deployment,
    *,
    department: str | None,
    state: str | None,
    level: str | None,
    item: str | None,
    limit: str | None,
    after: str | None,
) -> Listing:
    """The listing's query parameters, validated; raises `QueryError` naming the first bad one."""
    return Listing(
        department=_department(deployment, department),
        state=_choice("state", state, STATE_CHOICES),
        level=_choice("level", level, LEVEL_CHOICES),
        items=_items(deployment, item),
        limit=_limit(limit),
        after=None if after is None else decode_cursor(after),
    )


def list_cases(connection: Connection, query: Listing) -> tuple[list[dict[str, Any]], bool]:
    """One page of stored case rows, and whether more follow it."""
    c = tables.cases.c
    where: list[ColumnElement[bool]] = []
    if query.department is not None:
        where.append(c.department == query.department)
    if query.state is not None:
        where.append(c.state == query.state)
    if query.level is not None:
        where.append(c.level == query.level)
    if query.items is not None:
        where.append(c.item.in_(query.items))
    if query.after is not None:
        department, case_id = query.after
        where.append(
            or_(c.department > department, and_(c.department == department, c.case_id > case_id))
        )
    statement = (
        select(*_SHOWN)
        .where(and_(true(), *where))
        .order_by(c.department, c.case_id)
        .limit(query.limit + 1)
    )
    rows = [dict(row) for row in connection.execute(statement).mappings()]
    return rows[: query.limit], len(rows) > query.limit


def case_document(
    connection: Connection,
    department: str,
    case_id: str,
    *,
    deployment: Deployment,
    clock: Clock,
    at: datetime,
) -> dict[str, Any] | None:
    """Everything stored about one case and its clock at `at`; None for an unknown case."""
    e, c, k = tables.events.c, tables.cases.c, tables.cards.c
    bodies = (
        connection.execute(
            select(e.body).where(e.department == department, e.case_id == case_id).order_by(e.id)
        )
        .scalars()
        .all()
    )
    state = (
        connection.execute(select(*_SHOWN).where(c.department == department, c.case_id == case_id))
        .mappings()
        .first()
    )
    if not bodies and state is None:
        return None
    cards = connection.execute(
        select(k.level, k.reached_at, k.voided_at, k.void_reason)
        .where(k.department == department, k.case_id == case_id)
        .order_by(k.reached_at, k.id)
    ).mappings()
    tz = clock.tz
    wire = [json.loads(body) for body in bodies]
    doc: dict[str, Any] = {
        "department": department,
        "case_id": case_id,
        "events": wire,
        "state": None if state is None else _row_json(dict(state), tz),
        "cards": [_row_json(dict(card), tz) for card in cards],
        "explanation": None,
    }
    if not wire:
        doc["explanation_problem"] = "the case has no stored events to evaluate"
        return doc
    source = f"stored event of {department}/{case_id}"
    events = [parse_event(body, source=source) for body in wire]
    try:
        limits = limits_for(deployment, events)
        result = clock.evaluate(events, limits, at.astimezone(tz))
        doc["explanation"] = explanation(events, result, limits, clock.calendar, deployment)
    except (InputError, CalendarRangeError) as exc:
        doc["explanation_problem"] = str(exc)
    return doc


def cases_router(
    engine: Engine,
    config: Callable[[], Configuration],
    now: Callable[[], datetime],
) -> APIRouter:
    """The two case routes, reading `engine` (migrated) and explaining at `now()` with the
    configuration in service (`config()`, the one the projector uses, so that the
    explanation agrees with the stored state)."""
    router = APIRouter()

    @router.get(
        "/api/v1/cases/{department}/{case_id}",
        summary="One case: its events, stored state, cards and clock explanation",
        responses={404: {"model": ProblemModel}},
    )
    def get_case(department: str, case_id: str) -> JSONResponse:
        """The case's events, state row, cards (voided ones too) and esup.explain/1 document."""
        current = config()
        with engine.connect() as connection:
            doc = case_document(
                connection,
                department,
                case_id,
                deployment=current.deployment,
                clock=current.clock,
                at=now(),
            )
        if doc is None:
            return _problem(
                404,
                f"no case {department}/{case_id} is known: no event of it has been received; "
                "check the department code and the case number",
            )
        return JSONResponse(doc)

    @router.get(
        "/api/v1/cases",
        summary="Cases, filtered and paged by (department, case_id)",
        responses={400: {"model": ProblemModel}},
    )
    def get_cases(
        department: Annotated[str | None, Query(description="a department code")] = None,
        state: Annotated[str | None, Query(description=" | ".join(STATE_CHOICES))] = None,
        level: Annotated[str | None, Query(description=" | ".join(LEVEL_CHOICES))] = None,
        item: Annotated[
            str | None, Query(description="an item code (its sub-items included) or sub-item code")
        ] = None,
        limit: Annotated[
            str | None, Query(description=f"page size, 1 to {MAX_LIMIT}; {DEFAULT_LIMIT} if unset")
        ] = None,
        after: Annotated[str | None, Query(description="the `next` cursor of a page")] = None,
    ) -> JSONResponse:
        """A page of stored case rows and the cursor of the next page (null on the last)."""
        current = config()
        try:
            query = parse_listing(
                current.deployment,
                department=department,
                state=state,
                level=level,
                item=item,
                limit=limit,
                after=after,
            )
        except QueryError as exc:
            return _problem(400, str(exc))
        with engine.connect() as connection:
            rows, more = list_cases(connection, query)
        cursor = encode_cursor(rows[-1]["department"], rows[-1]["case_id"]) if more else None
        tz = current.clock.tz
        return JSONResponse({"cases": [_row_json(row, tz) for row in rows], "next": cursor})

    return router
