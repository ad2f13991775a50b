"""`Ingestor`: one agent's batch of events checked, stored and answered event by event.

    Ingestor(engine, deployment, now=..., clock_skew=..., on_accepted=...)
    ingest(grant, parsed, raw) -> BatchReport

An event is rejected, with a reason that starts with the field it is about,
when it breaks the wire format, names a department outside the token's grant
or unknown to the configuration, names an unknown item or an item owned by
another department, or happened later than the server's clock allows
(``now + clock_skew``). Rejected events are kept in the quarantine with their
body as received. The others go to the event store, with their body as
received: ``accepted`` when stored by this batch, ``duplicate`` when stored
before. One transaction stores the events, queues their cases for projection
(`server.store.queue`), keeps the rejected ones and notes the per-source
sequence numbers (`StreamStore`); after it commits, `on_accepted` hears which
cases received new events. The cases' state is derived afterwards, out of the
request (`server.projection`).

The HTTP layer (server.api.ingest) owns authentication, size caps and gzip.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

from sqlalchemy import Engine

from casework.config import Deployment, UnknownCodeError
from casework.errors import EventError
from casework.events import CaseEvent
from casework.wire import NDJSON_MEDIA_TYPES, dumps_line
from server.store.events import EventStore, Gap, Outcome, write_transaction
from server.store.streams import SOURCE_MAX, StreamStore
from server.store.tokens import Grant

__all__ = ["BatchReport", "CaseKey", "EventResult", "Ingestor", "OnAccepted", "raw_pieces"]

logger = logging.getLogger(__name__)

Status = Literal["accepted", "duplicate", "rejected"]
#: A case: (department, case_id).
CaseKey = tuple[str, str]
#: Hears the cases whose events a batch stored, after they were committed.
OnAccepted = Callable[[set[CaseKey]], object]

_BOM: Final = b"\xef\xbb\xbf"
_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_FIRST_BYTE: Final = re.compile(rb"[^ \t\r\n]")


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class EventResult:
    """The outcome of the event at `index` (0-based, in body order); `reason` only when rejected."""

    index: int
    event_id: str | None
    status: Status
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class BatchReport:
    """Every event's outcome in body order, and the cases that received new events."""

    results: tuple[EventResult, ...]
    cases: frozenset[CaseKey]

    def count(self, status: Status) -> int:
        return sum(1 for r in self.results if r.status == status)

    def to_json(self) -> dict[str, object]:
        """The response body of ``POST /api/v1/events``."""
        counts = Counter(r.status for r in self.results)
        return {
            "results": [
                {"index": r.index, "event_id": r.event_id, "status": r.status, "reason": r.reason}
                for r in self.results
            ],
            "accepted": counts["accepted"],
            "duplicate": counts["duplicate"],
            "rejected": counts["rejected"],
        }

    def to_bytes(self) -> bytes:
        """`to_json` as compact UTF-8 JSON, as the response carries it."""
        return _ENCODER.encode(self.to_json()).encode("utf-8")


def raw_pieces(body: bytes, content_type: str | None, count: int) -> list[str]:
    """The text of each of the `count` events in `body` as received; [] when they cannot be told
    apart.

    Splits the body the way `casework.wire.parse_batch` reads it: the elements
    of a JSON array (each written back as compact JSON), else the non-blank
    lines of JSON Lines, else (one event) the whole body.
    """
    body = body.removeprefix(_BOM)
    media = (content_type or "").partition(";")[0].strip().lower()
    first = _FIRST_BYTE.search(body)
    if media not in NDJSON_MEDIA_TYPES and first is not None and body[first.start()] == ord("["):
        try:
            values = json.loads(body)
        except ValueError:
            return []
        if isinstance(values, list) and len(values) == count:
            return [json.dumps(v, ensure_ascii=False, separators=(",", ":")) for v in values]
        return []
    lines = [chunk for chunk in body.split(b"\n") if chunk and not chunk.isspace()]
    if len(lines) == count:
        return [line.decode("utf-8", "replace").rstrip("\r") for line in lines]
    if count == 1:
        return [body.decode("utf-8", "replace")]
    return []


def _event_id_of(raw: str) -> str | None:
    """The `event_id` in an event's raw text, when it is readable and a string."""
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    event_id = value.get("event_id") if isinstance(value, dict) else None
    return event_id if isinstance(event_id, str) else None


def source_of(event: CaseEvent) -> str:
    """The stream an event belongs to: its ``source`` field when that is a string, else ""."""
    source = event.extra.get("source")
    return source if isinstance(source, str) else ""


class Ingestor:
    """Checks and stores batches for the deployment `deployment` on `engine` (migrated).

    `now` is the server's clock (aware datetimes); `clock_skew` how far past
    it an event may be stamped; `on_accepted` is called after each batch that
    stored new events (its failures are logged, never raised).
    """

    def __init__(
        self,
        engine: Engine,
        deployment: Deployment,
        *,
        now: Callable[[], datetime] = _utcnow,
        clock_skew: timedelta = timedelta(seconds=300),
        on_accepted: OnAccepted | None = None,
    ) -> None:
        self.engine = engine
        self.deployment = deployment
        self.now = now
        self.clock_skew = clock_skew
        self.on_accepted = on_accepted
        self.events = EventStore(engine, now=now)
        self.streams = StreamStore(engine, now=now)

    def problem(self, grant: Grant, event: CaseEvent, latest: datetime) -> str | None:
        """Why `event` from the holder of `grant` is rejected; None when it is not."""
        return self._scope_problem(grant, event.department, event.item) or self._own_problem(
            event, latest
        )

    def _scope_problem(self, grant: Grant, department: str, item_code: str) -> str | None:
        """Why an event of `department` about `item_code` is rejected from the holder of
        `grant`, whatever else it says; None when it is not."""
        if department not in grant.departments:
            allowed = ", ".join(sorted(grant.departments))
            return (
                f"department: {department!r} is outside the token's scope; "
                f"agent {grant.agent!r} may report for {allowed}"
            )
        try:
            self.deployment.department(department)
        except UnknownCodeError:
            return f"department: unknown department code {department!r}"
        try:
            item = self.deployment.parent_item(item_code)
        except UnknownCodeError:
            return f"item: unknown item code {item_code!r}"
        if item.department is not None and item.department != department:
            return (
                f"item: {item_code!r} belongs to department {item.department!r}, not {department!r}"
            )
        return None

    def _own_problem(self, event: CaseEvent, latest: datetime) -> str | None:
        """Why `event` is rejected for its instant or source; None when it is not."""
        if event.at > latest:
            return (
                f"at: {event.at.isoformat()} is later than the server's clock allows "
                f"({latest.astimezone(UTC).isoformat()}, now plus "
                f"{int(self.clock_skew.total_seconds())} s of clock skew)"
            )
        source = event.extra.get("source")
        if isinstance(source, str) and len(source) > SOURCE_MAX:
            return f"source: longer than {SOURCE_MAX} characters"
        return None

    def ingest(
        self,
        grant: Grant,
        parsed: Sequence[CaseEvent | EventError],
        raw: Callable[[], list[str]],
    ) -> BatchReport:
        """Check and store one batch from the holder of `grant`; one result per event, in order.

        `parsed` is `casework.wire.parse_batch`'s answer; `raw()` the events'
        texts as received (`raw_pieces`), kept as the stored and quarantined
        bodies ([] when they cannot be told apart: each event is then written
        with `dumps_line`). When this returns, the accepted events are
        committed and their cases queued for projection. Raises when the
        database fails; nothing reported accepted is lost then, and resending
        the batch is safe.
        """
        latest = self.now() + self.clock_skew
        valid: list[tuple[int, CaseEvent]] = []
        rejected: list[tuple[int, str]] = []
        scope: dict[tuple[str, str], str | None] = {}  # a batch names few (department, item)
        for index, entry in enumerate(parsed):
            if isinstance(entry, EventError):
                rejected.append((index, entry.reason))
                continue
            pair = (entry.department, entry.item)
            if pair in scope:
                problem = scope[pair]
            else:
                problem = scope[pair] = self._scope_problem(grant, *pair)
            problem = problem or self._own_problem(entry, latest)
            if problem is None:
                valid.append((index, entry))
            else:
                rejected.append((index, problem))

        pieces: list[str] = raw() if parsed else []
        results: list[EventResult | None] = [None] * len(parsed)
        cases: set[CaseKey] = set()
        kept: list[tuple[str, str]] = []
        for index, reason in rejected:
            entry = parsed[index]
            if isinstance(entry, CaseEvent):
                body = pieces[index] if pieces else dumps_line(entry)
                event_id: str | None = entry.event_id
            else:
                body = pieces[index] if pieces else ""
                event_id = _event_id_of(body)
            kept.append((body, reason))
            results[index] = EventResult(index, event_id, "rejected", reason)

        seqs: dict[str, list[int]] = {}
        for entry in parsed:
            if isinstance(entry, CaseEvent):
                source = source_of(entry)
                if len(source) <= SOURCE_MAX:
                    numbers = seqs.setdefault(source, [])
                    if entry.seq is not None:
                        numbers.append(entry.seq)

        events = [e for _, e in valid]
        bodies = [pieces[i] for i, _ in valid] if pieces else None
        outcomes: list[Outcome] = []
        gaps: list[Gap] = []
        if events or kept or seqs:
            with write_transaction(self.engine) as connection:
                outcomes = self.events.add_in(connection, grant.agent, events, bodies)
                self.events.quarantine_in(connection, grant.agent, kept)
                gaps = self.streams.observe_in(connection, grant.agent, seqs) if seqs else []
        for (index, event), outcome in zip(valid, outcomes, strict=True):
            results[index] = EventResult(index, event.event_id, outcome)
            if outcome == "accepted":
                cases.add((event.department, event.case_id))
        for gap in gaps:
            logger.warning(
                "sequence gap: agent=%s source=%r expected=%d got=%d",
                gap.agent,
                gap.source,
                gap.expected,
                gap.got,
            )

        report = BatchReport(tuple(r for r in results if r is not None), frozenset(cases))
        if cases and self.on_accepted is not None:
            try:
                self.on_accepted(set(cases))
            except Exception:
                logger.exception("on_accepted failed for %d case(s)", len(cases))
        return report
