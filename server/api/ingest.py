"""``POST /api/v1/events``: a batch of events from an agent.

The request carries ``Authorization: Bearer <token>`` and a body that is a
JSON array of events or JSON Lines, optionally ``Content-Encoding: gzip``.
Errors about the request as a whole are answered with ``{"reason": "..."}``:

    401  no bearer token, or one that is unknown or revoked
    413  a body over `max_body_bytes`, as sent or once decompressed
    415  a content encoding other than gzip
    400  a corrupt gzip stream, or a body that is neither a JSON array nor JSON Lines
    503  the ingest worker process holding the batch died (`server.ingestworkers`):
         the batch may or may not be stored; resending it is safe

Otherwise 200 with one result per event (see `server.ingest.BatchReport`),
sent only after the accepted events are committed.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from casework.errors import EventError
from server.ingest import Ingestor, Processed
from server.ingestworkers import IngestWorkers, WorkerLostError
from server.store.tokens import Grant, TokenStore

__all__ = [
    "BatchResponse",
    "IngestContext",
    "RefusedError",
    "gunzip",
    "process_batch",
    "router",
]

logger = logging.getLogger(__name__)

router = APIRouter()


@dataclass(frozen=True, slots=True)
class IngestContext:
    """What the route needs, kept in ``app.state.ingest``: batches go to `workers` when
    there are any (`server.ingestworkers`), else to `ingestor` in a thread of this process."""

    tokens: TokenStore
    ingestor: Ingestor
    max_body_bytes: int
    workers: IngestWorkers | None = None


class RefusedError(Exception):
    """A request refused as a whole: its HTTP status and the reason sent back."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(reason)

    def __reduce__(self) -> tuple[type[RefusedError], tuple[int, str]]:
        return RefusedError, (self.status, self.reason)  # raised in an ingest worker

    def response(self) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return JSONResponse({"reason": self.reason}, status_code=self.status, headers=headers)


class EventResultModel(BaseModel):
    index: int
    event_id: str | None
    status: Literal["accepted", "duplicate", "rejected"]
    reason: str | None


class BatchResponse(BaseModel):
    """Per event, in body order; and the counts of each status."""

    results: list[EventResultModel]
    accepted: int
    duplicate: int
    rejected: int


class ReasonModel(BaseModel):
    reason: str


def _too_large(limit: int, what: str) -> RefusedError:
    return RefusedError(413, f"the body is larger than {limit} bytes {what}; send smaller batches")


def gunzip(data: bytes, limit: int) -> bytes:
    """`data` decompressed, every gzip member of it.

    Raises `RefusedError`: 413 beyond `limit` bytes, 400 for a corrupt or truncated stream.
    """
    out = bytearray()
    rest = data
    while rest:
        stream = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            out += stream.decompress(rest, limit + 1 - len(out))
            while stream.unconsumed_tail and len(out) <= limit:
                out += stream.decompress(stream.unconsumed_tail, limit + 1 - len(out))
        except zlib.error as exc:
            raise RefusedError(400, f"the gzip body is corrupt: {exc}") from None
        if len(out) > limit:
            raise _too_large(limit, "once decompressed")
        if not stream.eof:
            raise RefusedError(400, "the gzip body is truncated: its stream ends early")
        rest = stream.unused_data.lstrip(b"\0")  # gzip(1) tolerates zero padding too
    return bytes(out)


async def _read_body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise RefusedError(400, f"Content-Length {length!r} is not a number") from None
        if declared > limit:
            raise _too_large(limit, "(Content-Length)")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large(limit, "as sent")
    return bytes(body)


def _grant(tokens: TokenStore, authorization: str | None) -> Grant:
    if not authorization:
        raise RefusedError(401, "no bearer token; send the header Authorization: Bearer <token>")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise RefusedError(401, "the Authorization header is not 'Bearer <token>'")
    grant = tokens.verify(token.strip())
    if grant is None:
        raise RefusedError(401, "the bearer token is unknown or revoked")
    return grant


def process_batch(
    ingestor: Ingestor,
    grant: Grant,
    body: bytes,
    encoding: str,
    content_type: str | None,
    max_body_bytes: int,
) -> Processed:
    """The batch decompressed, checked and stored, and its answer written.

    Raises `RefusedError` for a body refused as a whole (gzip, size, not a batch).
    """
    if encoding == "gzip":
        body = gunzip(body, max_body_bytes)
    try:
        report = ingestor.ingest_body(grant, body, content_type)
    except EventError as exc:
        raise RefusedError(400, exc.reason) from None
    return Processed.of(report)


@router.post(
    "/api/v1/events",
    summary="Send a batch of case events",
    response_model=BatchResponse,
    responses={
        400: {"model": ReasonModel},
        401: {"model": ReasonModel},
        413: {"model": ReasonModel},
        415: {"model": ReasonModel},
    },
)
async def post_events(
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
    content_encoding: Annotated[str | None, Header()] = None,
    content_type: Annotated[str | None, Header()] = None,
) -> Response:
    """A JSON array of events or JSON Lines (gzip allowed); one result per event."""
    context: IngestContext = request.app.state.ingest
    try:
        # One indexed look-up, done here: a hop to the thread pool and back costs more.
        grant = _grant(context.tokens, authorization)
        encoding = (content_encoding or "identity").strip().lower()
        if encoding == "x-gzip":
            encoding = "gzip"
        if encoding not in ("identity", "gzip"):
            raise RefusedError(
                415, f"Content-Encoding {content_encoding!r} is not gzip or identity"
            )
        body = await _read_body(request, context.max_body_bytes)
        if context.workers is not None:
            done = await context.workers.process(grant, body, encoding, content_type)
        else:
            done = await run_in_threadpool(
                process_batch,
                context.ingestor,
                grant,
                body,
                encoding,
                content_type,
                context.max_body_bytes,
            )
    except RefusedError as problem:
        logger.info("ingest refused: status=%d reason=%s", problem.status, problem.reason)
        return problem.response()
    except WorkerLostError as lost:
        logger.error("ingest failed: agent=%s: %s", grant.agent, lost)
        reason = f"{lost}; it may or may not be stored: send it again"
        return JSONResponse({"reason": reason}, status_code=503, headers={"Retry-After": "1"})
    logger.info(
        "ingest: agent=%s events=%d accepted=%d duplicate=%d rejected=%d",
        grant.agent,
        done.events,
        done.accepted,
        done.duplicate,
        done.rejected,
    )
    return Response(done.answer, media_type="application/json")
