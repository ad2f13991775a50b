"""``GET /api/v1/projection``: how far the case projection is behind the stored events.

    {"pending": 12, "oldest_marked_at": "2026-11-30T08:00:00.120000+00:00"}

`pending` counts the cases whose events are stored but whose state (cases,
figures) does not reflect them yet; `oldest_marked_at` is when the one waiting
longest was queued (null when none is). A client that has just sent events
and wants to read their cases waits until `pending` is 0.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from server.store.queue import ProjectionQueue

__all__ = ["router"]

router = APIRouter()


@router.get("/api/v1/projection", summary="How many cases wait for their state to be derived")
async def projection_lag(request: Request) -> dict[str, object]:
    engine: Engine = request.app.state.engine
    lag = await run_in_threadpool(ProjectionQueue(engine).lag)
    oldest = lag.oldest.isoformat() if lag.oldest is not None else None
    return {"pending": lag.pending, "oldest_marked_at": oldest}
