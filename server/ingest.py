"""`Ingestor`: one agent's batch of events checked, stored and answered event by event.

    Ingestor(engine, deployment, now=..., clock_skew=..., on_accepted=...)
    ingest_body(grant, body, content_type) -> BatchReport   a request body
    ingest(grant, parsed, raw) -> BatchReport                `parse_batch`'s answer

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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Literal, cast

from pydantic_core import from_json
from sqlalchemy import Engine

from casework.batches import NDJSON_MEDIA_TYPES, json_lines_of, parse_batch
from casework.config import Deployment, UnknownCodeError
from casework.errors import EventError
from casework.events import CaseEvent
from casework.wire import EventFields, dumps_line, event_fields, parse_json_line
from server.store.events import EventKey, EventRow, EventStore, Gap, write_transaction
from server.store.streams import SOURCE_MAX, StreamStore
from server.store.tokens import Grant

__all__ = [
    "BatchReport",
    "CaseKey",
    "EventResult",
    "Ingestor",
    "OnAccepted",
    "Processed",
    "raw_pieces",
]

logger = logging.getLogger(__name__)

Status = Literal["accepted", "duplicate", "rejected"]
#: A case: (department, case_id).
CaseKey = tuple[str, str]
#: Hears the cases whose events a batch stored, after they were committed.
OnAccepted = Callable[[set[CaseKey]], object]

_BOM: Final = b"\xef\xbb\xbf"
#: A string as JSON text, non-ASCII kept (what ``json.dumps(ensure_ascii=False)`` writes).
_json_string: Final[Callable[[str], str]] = json.encoder.encode_basestring
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
    """Every event's outcome in body order, and the cases that received new events.

    Kept as one list per field (an event's `event_ids`, its `statuses`, and the
    `reasons` of the rejected ones by index): a batch has thousands of events
    and is answered without an object per event.
    """

    event_ids: Sequence[str | None]
    statuses: Sequence[Status]
    reasons: Mapping[int, str]
    cases: frozenset[CaseKey]

    @property
    def results(self) -> tuple[EventResult, ...]:
        """One `EventResult` per event, in body order."""
        reasons = self.reasons
        return tuple(
            EventResult(index, event_id, status, reasons.get(index))
            for index, (event_id, status) in enumerate(
                zip(self.event_ids, self.statuses, strict=True)
            )
        )

    def count(self, status: Status) -> int:
        return self.statuses.count(status)

    def to_json(self) -> dict[str, object]:
        """The response body of ``POST /api/v1/events``."""
        return {
            "results": [
                {"index": r.index, "event_id": r.event_id, "status": r.status, "reason": r.reason}
                for r in self.results
            ],
            "accepted": self.count("accepted"),
            "duplicate": self.count("duplicate"),
            "rejected": self.count("rejected"),
        }

    def to_bytes(self) -> bytes:
        """`to_json` as compact UTF-8 JSON, as the response carries it, written directly."""
        reasons = self.reasons
        parts = []
        for index, (event_id, status) in enumerate(zip(self.event_ids, self.statuses, strict=True)):
            reason = reasons.get(index)
            shown_id = "null" if event_id is None else _json_string(event_id)
            shown_reason = "null" if reason is None else _json_string(reason)
            parts.append(
                f'{{"index":{index},"event_id":{shown_id},"status":"{status}",'
                f'"reason":{shown_reason}}}'
            )
        counts = (
            f'"accepted":{self.count("accepted")},"duplicate":{self.count("duplicate")},'
            f'"rejected":{self.count("rejected")}'
        )
        return f'{{"results":[{",".join(parts)}],{counts}}}'.encode()


@dataclass(frozen=True, slots=True)
class Processed:
    """A batch as answered: its events' counts, the cases that received new events, and
    the response body (what an ingest worker process sends back, `server.ingestworkers`)."""

    events: int
    accepted: int
    duplicate: int
    rejected: int
    cases: frozenset[CaseKey]
    answer: bytes

    @classmethod
    def of(cls, report: BatchReport) -> Processed:
        return cls(
            len(report.statuses),
            report.count("accepted"),
            report.count("duplicate"),
            report.count("rejected"),
            report.cases,
            report.to_bytes(),
        )


def raw_pieces(body: bytes, content_type: str | None, count: int) -> list[str]:
    """The text of each of the `count` events in `body` as received; [] when they cannot be told
    apart.

    Splits the body the way `casework.batches.parse_batch` reads it: the elements
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
        source = event.extra.get("source")
        return self._instant_or_source_problem(
            event.at, source if isinstance(source, str) else "", latest
        )

    def ingest_body(self, grant: Grant, body: bytes, content_type: str | None) -> BatchReport:
        """Read, check and store one request body from the holder of `grant`.

        The body is read as `casework.batches.parse_batch` reads it, and the same
        as `ingest` of its answer; JSON Lines are read in one pass from each
        line to its row, without a `CaseEvent` for a plainly well-formed line
        (`casework.wire.event_fields`; any other line goes through
        `parse_json_line`, so every reason is the same). Raises `EventError`
        for a body that is neither a JSON array nor JSON Lines.
        """
        lines = json_lines_of(body, content_type)
        if lines is None:
            parsed = parse_batch(body, content_type)
            return self.ingest(grant, parsed, lambda: raw_pieces(body, content_type, len(parsed)))
        return self._store(grant, self._check(grant, _read_lines(lines)))

    def ingest(
        self,
        grant: Grant,
        parsed: Sequence[CaseEvent | EventError],
        raw: Callable[[], list[str]],
    ) -> BatchReport:
        """Check and store one batch from the holder of `grant`; one result per event, in order.

        `parsed` is `casework.batches.parse_batch`'s answer; `raw()` the events'
        texts as received (`raw_pieces`), kept as the stored and quarantined
        bodies ([] when they cannot be told apart: each event is then written
        with `dumps_line`). When this returns, the accepted events are
        committed and their cases queued for projection. Raises when the
        database fails; nothing reported accepted is lost then, and resending
        the batch is safe.
        """
        pieces: list[str] = raw() if parsed else []
        return self._store(grant, self._check(grant, _read_parsed(parsed, pieces)))

    def _check(self, grant: Grant, entries: Iterable[_Entry]) -> _Batch:
        """The batch of `entries` checked: what to store, to reject and to answer.

        One loop for every event of a batch: written for speed, the checks of
        `problem` in its order (scope, then instant, then source).
        """
        latest = self.now() + self.clock_skew
        batch = _Batch()
        event_ids = batch.event_ids
        statuses = batch.statuses
        rows = batch.rows
        first = batch.first
        seqs = batch.seqs
        scope: dict[tuple[str, str], str | None] = {}  # a batch names few (department, item)
        for fields, extra, body in entries:
            if fields is None:  # unreadable: `extra` is the reason
                batch.reject(_event_id_of(body), cast(str, extra), body)
                continue
            event_id, case_id, department, item, kind, at, seq = fields
            source = cast(Mapping[str, object], extra).get("source")
            if type(source) is not str:
                source = ""
            keepable = len(source) <= SOURCE_MAX and "\x00" not in source
            if keepable:
                numbers = seqs.get(source)
                if numbers is None:
                    numbers = seqs[source] = []
                if seq is not None:
                    numbers.append(seq)
            pair = (department, item)
            problem = scope.get(pair, _UNSEEN)
            if problem is _UNSEEN:
                problem = scope[pair] = self._scope_problem(grant, department, item)
            if problem is None and (at > latest or not keepable):
                problem = self._instant_or_source_problem(at, source, latest)
            if problem is not None:
                batch.reject(event_id, problem, body)
                continue
            key = (department, event_id)
            if key in first:  # the same event earlier in this batch: that one counts
                event_ids.append(event_id)
                statuses.append("duplicate")
                continue
            first[key] = len(event_ids)
            event_ids.append(event_id)
            statuses.append("accepted")
            rows.append((department, event_id, case_id, item, kind, at, seq, body))
        return batch

    def _instant_or_source_problem(self, at: datetime, source: str, latest: datetime) -> str | None:
        """`_own_problem` of an event at `at` whose ``source`` is `source`."""
        if at > latest:
            return (
                f"at: {at.isoformat()} is later than the server's clock allows "
                f"({latest.astimezone(UTC).isoformat()}, now plus "
                f"{int(self.clock_skew.total_seconds())} s of clock skew)"
            )
        if len(source) > SOURCE_MAX:
            return f"source: longer than {SOURCE_MAX} characters"
        if "\x00" in source:
            return "source: must not contain the NUL character (U+0000)"
        return None

    def _store(self, grant: Grant, batch: _Batch) -> BatchReport:
        """Store the checked `batch` in one transaction and report on it."""
        before: set[EventKey] = set()
        gaps: list[Gap] = []
        if batch.rows or batch.kept or batch.seqs:
            prepared = self.events.prepare(grant.agent, batch.rows)
            with write_transaction(self.engine) as connection:
                before = self.events.add_prepared_in(connection, prepared)
                self.events.quarantine_in(connection, grant.agent, batch.kept)
                if batch.seqs:
                    gaps = self.streams.observe_in(connection, grant.agent, batch.seqs)
        statuses = batch.statuses
        if before:
            for key in before:
                statuses[batch.first[key]] = "duplicate"
            cases = frozenset((r[0], r[2]) for r in batch.rows if (r[0], r[1]) not in before)
        else:
            cases = frozenset((r[0], r[2]) for r in batch.rows)
        for gap in gaps:
            logger.warning(
                "sequence gap: agent=%s source=%r expected=%d got=%d",
                gap.agent,
                gap.source,
                gap.expected,
                gap.got,
            )
        report = BatchReport(batch.event_ids, statuses, batch.reasons, cases)
        if cases and self.on_accepted is not None:
            try:
                self.on_accepted(set(cases))
            except Exception:
                logger.exception("on_accepted failed for %d case(s)", len(cases))
        return report


class _Batch:
    """A batch as it is read: each event's id and tentative status, the reasons of those
    rejected, the rows to store (distinct keys, the first of each), the rejected
    (body, reason) to keep, and the sequence numbers per source."""

    __slots__ = ("event_ids", "first", "kept", "reasons", "rows", "seqs", "statuses")

    def __init__(self) -> None:
        self.event_ids: list[str | None] = []
        self.statuses: list[Status] = []
        self.reasons: dict[int, str] = {}
        self.rows: list[EventRow] = []
        self.first: dict[EventKey, int] = {}  # a stored row's key -> its event's index
        self.kept: list[tuple[str, str]] = []
        self.seqs: dict[str, list[int]] = {}

    def reject(self, event_id: str | None, reason: str, body: str) -> None:
        self.reasons[len(self.event_ids)] = reason
        self.event_ids.append(event_id)
        self.statuses.append("rejected")
        self.kept.append((body, reason))


#: One event as read: its fields and its decoded object (or `CaseEvent.extra`: where its
#: ``source`` is) and its text; or, for one that cannot be read, None, the reason and its text.
_Entry = tuple[EventFields | None, Mapping[str, object] | str, str]
_UNSEEN: Final = "unseen"  # not a problem's wording: it never reaches an answer


def _read_lines(lines: bytes) -> Iterator[_Entry]:
    """The events of a JSON Lines body (`casework.batches.json_lines_of`), as `parse_batch`
    reads them, each well-formed line straight to its fields."""
    for number, chunk in enumerate(lines.split(b"\n"), start=1):
        if not chunk or chunk.isspace():
            continue
        text = chunk.decode("utf-8", "replace").rstrip("\r")
        try:
            obj = from_json(chunk)
        except ValueError:
            obj = None
        fields = event_fields(obj)
        if fields is not None:
            yield fields, obj, text
            continue
        try:  # anything unusual: read as parse_batch reads it, for the same reasons
            event = parse_json_line(chunk, source="batch", line=number)
        except EventError as exc:
            yield None, exc.reason, text
        else:
            yield _fields_of(event), event.extra, text


def _read_parsed(parsed: Sequence[CaseEvent | EventError], pieces: list[str]) -> Iterator[_Entry]:
    """`parse_batch`'s answer as entries, with the events' texts `pieces` ([]: written anew)."""
    for index, entry in enumerate(parsed):
        if isinstance(entry, EventError):
            yield None, entry.reason, pieces[index] if pieces else ""
        else:
            yield _fields_of(entry), entry.extra, pieces[index] if pieces else dumps_line(entry)


def _fields_of(event: CaseEvent) -> EventFields:
    return (
        event.event_id,
        event.case_id,
        event.department,
        event.item,
        event.type,
        event.at,
        event.seq,
    )
