"""``GET /api/v1/rates``: the figures of docs/design.md for a period and a scope.

    GET /api/v1/rates?start=YYYY-MM-DD&end=YYYY-MM-DD&scope=all|category|department|item&code=...
    GET /api/v1/rates?start=...&end=...&department=CODE     (the same as scope=department&code=CODE)

`start` and `end` are local dates in the deployment's time zone; the period
is [start, end), end exclusive. `scope` defaults to ``all``; the other scopes
need `code` (a category, a department code, an item or sub-item code).
The answer is `Figures.to_json`: the counts, and each rate as
``{"value", "numerator", "denominator"}`` (value null when the denominator is 0).

A parameter that is missing or wrong is answered 422 with ``{"reason": "..."}``
naming the parameter, the value and what would be valid.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import Engine

from server.figures import SCOPES, PeriodError, ScopeError, figures
from server.liveconfig import Configuration

__all__ = ["rates_router"]

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class RateModel(BaseModel):
    value: float | None
    numerator: int
    denominator: int


class FiguresModel(BaseModel):
    """The figures of one scope over [start, end); see server.figures.Figures."""

    start: str
    end: str
    scope: str
    code: str | None
    received: int
    carried_over: int
    completed: int
    withdrawn: int
    early: int
    on_time: int
    late: int
    open_at_end: int
    overdue_at_end: int
    warnings: int
    yellow_cards: int
    red_cards: int
    invalid: int
    completion_rate: RateModel
    on_time_rate: RateModel


class ReasonModel(BaseModel):
    reason: str


class _BadParameterError(ValueError):
    pass


def _date(name: str, text: str | None) -> date:
    if not text:
        raise _BadParameterError(f"The parameter {name} is missing; give a date as YYYY-MM-DD.")
    try:
        if not _DATE.match(text):
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError:
        raise _BadParameterError(
            f"The parameter {name}={text!r} is not a date; give it as YYYY-MM-DD, e.g. 2024-01-01."
        ) from None


def rates_router(engine: Engine, config: Callable[[], Configuration]) -> APIRouter:
    """A router serving ``GET /api/v1/rates`` from `engine` with the configuration in
    service (`config()`)."""
    router = APIRouter()

    @router.get(
        "/api/v1/rates",
        summary="Figures and rates for a period and a scope",
        response_model=FiguresModel,
        responses={422: {"model": ReasonModel}},
    )
    def get_rates(
        start: Annotated[str | None, Query(description="first local date, YYYY-MM-DD")] = None,
        end: Annotated[str | None, Query(description="local date after the last")] = None,
        scope: Annotated[str, Query(description=f"one of {', '.join(SCOPES)}")] = "all",
        code: Annotated[str | None, Query(description="category, department or item")] = None,
        department: Annotated[
            str | None, Query(description="shorthand for scope=department&code=...")
        ] = None,
    ) -> Any:
        """Counts and rates as defined in docs/design.md ("Figures")."""
        try:
            if department:
                if code or scope not in ("all", "department"):
                    raise _BadParameterError(
                        f"The parameter department={department!r} stands for "
                        "scope=department&code=...; give it alone, without scope or code."
                    )
                scope, code = "department", department
            first = _date("start", start)
            after = _date("end", end)
            result = figures(engine, config().deployment, first, after, scope, code or None)
        except (_BadParameterError, ScopeError, PeriodError) as exc:
            return JSONResponse({"reason": str(exc)}, status_code=422)
        return JSONResponse(result.to_json())

    return router
