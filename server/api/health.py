"""``GET /healthz`` (the process answers) and ``GET /readyz`` (the database is usable)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from server.errors import DatabaseUnavailableError, SchemaOutOfDateError
from server.store.migrate import check_current

__all__ = ["router"]

router = APIRouter()


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: the database answers and is migrated to this version",
    responses={503: {"description": "not ready; `reason` says why"}},
)
async def readyz(request: Request) -> JSONResponse:
    engine: Engine = request.app.state.engine
    try:
        await run_in_threadpool(check_current, engine)
    except (DatabaseUnavailableError, SchemaOutOfDateError) as exc:
        return JSONResponse({"status": "unavailable", "reason": str(exc)}, status_code=503)
    except SQLAlchemyError as exc:
        reason = f"the database failed: {exc}"
        return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)
    return JSONResponse({"status": "ready"})
