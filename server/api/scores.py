"""The scores API: the feed, the office's inputs, appeals and periods.

    GET  /api/v1/scores?period=2025[&evidence=false]   the results as JSON
    GET  /api/v1/scores.csv?period=...                 one row per department
    GET  /api/v1/scores.xlsx?period=...                the workbook (docs/scores.md)
    POST /api/v1/scores/inputs/{kind}                  office: a JSON array of rows
    GET  /api/v1/scores/appeals?department=&status=    appeals with their audit trail
    GET  /api/v1/scores/audit?subject=                 the audit trail of one subject
    POST /api/v1/scores/appeals                        department (its own) or office
    POST /api/v1/scores/appeals/{id}/decision          supervisor: uphold or reject
    POST /api/v1/scores/periods/{period}/close         office: freeze the results
    POST /api/v1/scores/periods/{period}/restate       office: apply late changes, logged

Reading is open, as /api/v1/rates is. Writing needs ``Authorization: Bearer
<operator token>`` (``esup-server operator create``); an agent's token grants
nothing here. 401: no or an unknown token; 403: a role that may not do it;
404: an unknown kind, appeal or card; 409: an appeal or period in the wrong
state; 422: a bad parameter. Every answer with an error is ``{"reason": ...}``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import Engine

from casework.config import Deployment
from server.scores import audit, feed
from server.scores.appeals import AppealError, AppealStore, UnknownAppealError, UnknownCardError
from server.scores.importer import import_rows, record_import
from server.scores.inputs import KINDS
from server.scores.operators import Operator, OperatorStore
from server.scores.period import Period, PeriodTextError
from server.scores.rules import ScoreRules
from server.scores.service import PeriodClosedError, ScoreService

__all__ = ["scores_router"]

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


class _RefusedError(Exception):
    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason

    def response(self) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return JSONResponse({"reason": self.reason}, status_code=self.status, headers=headers)


class AppealIn(BaseModel):
    department: str = Field(min_length=1, max_length=64)
    case_id: str = Field(min_length=1, max_length=128)
    level: str = Field(pattern="^(warning|yellow|red)$")
    reason: str = Field(min_length=1)


class DecisionIn(BaseModel):
    uphold: bool
    reason: str = Field(min_length=1)


class RestateIn(BaseModel):
    reason: str = Field(min_length=1)


def scores_router(
    engine: Engine,
    deployment: Deployment,
    rules: ScoreRules,
    now: Callable[[], datetime],
    *,
    listen: Callable[[Callable[[Any, Any], None]], None] | None = None,
) -> APIRouter:
    """The scores routes on `engine`, for `deployment`'s departments under `rules`;
    `listen` (a `LiveConfig`'s) lets them follow a reloaded configuration."""
    router = APIRouter()
    service = ScoreService(engine, deployment, rules, now=now)
    appeals = AppealStore(engine, now=now)
    operators = OperatorStore(engine, now=now)
    departments = {d.code for d in deployment.departments}

    def reconfigure(_old: Any, new: Any) -> None:
        service.reconfigure(new.deployment)
        departments.clear()
        departments.update(d.code for d in new.deployment.departments)

    if listen is not None:
        listen(reconfigure)

    def operator(authorization: str | None, *roles: str) -> Operator:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _RefusedError(401, "Send Authorization: Bearer <operator token>.")
        found = operators.verify(token.strip())
        if found is None:
            raise _RefusedError(401, "The operator token is unknown or revoked.")
        if found.role not in roles:
            raise _RefusedError(
                403, f"Operator {found.name!r} is a {found.role}; this needs: {', '.join(roles)}."
            )
        return found

    def period_of(text: str | None) -> Period:
        if not text:
            raise _RefusedError(422, "The parameter period is missing; give 2025 or 2025-03.")
        try:
            return Period.parse(text)
        except PeriodTextError as exc:
            raise _RefusedError(422, str(exc)) from None

    def answer(action: Callable[[], Any]) -> Any:
        try:
            return action()
        except _RefusedError as exc:
            return exc.response()
        except (UnknownAppealError, UnknownCardError) as exc:
            return JSONResponse({"reason": str(exc)}, status_code=404)
        except (AppealError, PeriodClosedError) as exc:
            return JSONResponse({"reason": str(exc)}, status_code=409)

    @router.get("/api/v1/scores", summary="Scores, ranks, ratings, deductions with evidence")
    def get_scores(
        period: Annotated[str | None, Query(description="a year 2025 or a month 2025-03")] = None,
        evidence: Annotated[bool, Query(description="list each deduction's evidence")] = True,
    ) -> Any:
        return answer(lambda: service.scores(period_of(period), evidence=evidence).to_json())

    @router.get("/api/v1/scores.csv", summary="The scores as CSV, one row per department")
    def get_scores_csv(period: Annotated[str | None, Query()] = None) -> Any:
        def build() -> Response:
            p = period_of(period)
            text = feed.to_csv(service.scores(p, evidence=False))
            return Response(
                text.encode("utf-8"),
                media_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": f'attachment; filename="scores-{p}.csv"'},
            )

        return answer(build)

    @router.get("/api/v1/scores.xlsx", summary="The scores workbook")
    def get_scores_xlsx(period: Annotated[str | None, Query()] = None) -> Any:
        def build() -> Response:
            p = period_of(period)
            return Response(
                feed.to_xlsx(service.scores(p)),
                media_type=XLSX,
                headers={"Content-Disposition": f'attachment; filename="scores-{p}.xlsx"'},
            )

        return answer(build)

    @router.post("/api/v1/scores/inputs/{kind}", summary="Store the office's input rows")
    def post_inputs(
        kind: str,
        rows: Annotated[list[dict[str, Any]], Body()],
        authorization: Annotated[str | None, Header()] = None,
    ) -> Any:
        def store() -> Any:
            who = operator(authorization, "office")
            if kind not in KINDS:
                raise _RefusedError(404, f"Unknown input kind {kind!r}; kinds: {', '.join(KINDS)}.")
            at = now()
            report = import_rows(
                engine,
                KINDS[kind],
                enumerate(rows, start=1),
                departments=departments,
                platforms=rules.platforms,
                now=at,
            )
            record_import(engine, report, actor=who.name, source="POST", at=at)
            restated = service.restate_closed(f"{kind} posted by {who.name}", who.name)
            return {**report.to_json(), "restated": restated}

        return answer(store)

    @router.get("/api/v1/scores/audit", summary="The audit trail of one subject")
    def get_audit(
        subject: Annotated[
            str, Query(description="appeal:ID, card:DEPT/CASE/LEVEL, period:P or import:KIND")
        ],
    ) -> Any:
        with engine.connect() as connection:
            return [e.to_json() for e in audit.trail(connection, subject)]

    @router.get("/api/v1/scores/appeals", summary="Appeals and their audit trail")
    def get_appeals(department: str | None = None, status: str | None = None) -> Any:
        return [a.to_json() for a in appeals.list(department, status)]

    @router.post("/api/v1/scores/appeals", status_code=201, summary="File an appeal on a card")
    def post_appeal(body: AppealIn, authorization: Annotated[str | None, Header()] = None) -> Any:
        def file() -> Any:
            who = operator(authorization, "department", "office")
            if who.role == "department" and who.department != body.department:
                why = f"Operator {who.name!r} appeals for {who.department} only."
                raise _RefusedError(403, why)
            appeal = appeals.file(body.department, body.case_id, body.level, body.reason, who.name)
            return JSONResponse(appeal.to_json(), status_code=201)

        return answer(file)

    @router.post("/api/v1/scores/appeals/{appeal_id}/decision", summary="Decide an appeal")
    def post_decision(
        appeal_id: int, body: DecisionIn, authorization: Annotated[str | None, Header()] = None
    ) -> Any:
        def decide() -> Any:
            who = operator(authorization, "supervisor")
            appeal = appeals.decide(appeal_id, body.uphold, body.reason, who.name)
            restated = (
                service.restate_closed(f"appeal {appeal_id} upheld", who.name)
                if body.uphold
                else []
            )
            return {**appeal.to_json(), "restated": restated}

        return answer(decide)

    @router.post("/api/v1/scores/periods/{period}/close", summary="Close a period")
    def post_close(period: str, authorization: Annotated[str | None, Header()] = None) -> Any:
        def close() -> Any:
            who = operator(authorization, "office")
            return service.close(period_of(period), who.name).to_json()

        return answer(close)

    @router.post("/api/v1/scores/periods/{period}/restate", summary="Restate a closed period")
    def post_restate(
        period: str, body: RestateIn, authorization: Annotated[str | None, Header()] = None
    ) -> Any:
        def restate() -> Any:
            who = operator(authorization, "office")
            done = service.restate(period_of(period), body.reason, who.name)
            return {"restated": done}

        return answer(restate)

    return router
