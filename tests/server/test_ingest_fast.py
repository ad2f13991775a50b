"""`Ingestor.ingest_body` reads JSON Lines exactly as `ingest` reads `parse_batch`'s answer.

Ingest reads a well-formed line straight into the row it stores, without a
`CaseEvent`; every other line goes through `parse_json_line`. These tests feed
bodies of odd and ordinary lines to both paths and compare what each would
store, keep in the quarantine and answer, event by event; and the answer
written directly must be the bytes the JSON encoder writes of it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from casework.batches import parse_batch
from casework.configfiles import load_config
from casework.errors import EventError
from casework.events import EVENT_TYPES
from server.ingest import BatchReport, Ingestor, _Batch, raw_pieces
from server.store.database import make_engine
from server.store.tokens import Grant

CONFIG = Path(__file__).resolve().parents[2] / "config"
NOW = datetime(2024, 3, 1, 4, 0, tzinfo=UTC)
GRANT = Grant("agent-1", frozenset({"fgw", "jyj", "ghost"}))

PAIRS = [
    ("fgw", "fgw-001"),
    ("fgw", "fgw-001-01"),
    ("fgw", "jyj-001"),
    ("fgw", "nope-001"),
    ("jyj", "rx-zx"),
    ("ghost", "fgw-001"),
    ("zrzy", "zrzy-002"),
]
INSTANTS = [
    "2024-03-01T09:30:00+08:00",
    "2024-03-01T12:04:00+08:00",  # within the skew
    "2024-03-01T12:06:00+08:00",  # beyond it
    "2024-03-01t04:00:00.250z",
    "2024-03-01 03:59:59-00:30",
    "2024-03-01T09:30:00",
    "2024-02-30T09:30:00+08:00",
]
ODD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-2, max_value=3),
    st.sampled_from(["", "5", "x" * 129, "x" * 257, "approved", "hearing", 1.5]),
)


@st.composite
def event_line(draw: st.DrawFn) -> bytes:
    department, item = draw(st.sampled_from(PAIRS))
    kind = draw(st.sampled_from([*EVENT_TYPES, "opened"]))
    obj: dict[str, Any] = {
        "event_id": f"e-{draw(st.integers(min_value=0, max_value=6))}",
        "seq": draw(st.none() | st.integers(min_value=1, max_value=8)),
        "case_id": f"C-{draw(st.integers(min_value=0, max_value=3))}",
        "department": department,
        "item": item,
        "type": kind,
        "at": draw(st.sampled_from(INSTANTS)),
    }
    if kind == "suspended":
        obj["reason"], obj["days"] = "hearing", 3
    elif kind == "extended":
        obj["days"] = 2
    elif kind == "step":
        obj["step"] = "review"
    if draw(st.booleans()):
        obj["source"] = draw(st.sampled_from(["", "a.csv", "b" * 256, "c" * 257, 7, None]))
    for _ in range(draw(st.integers(min_value=0, max_value=2))):
        name = draw(st.sampled_from([*obj, "promised_days", "result", "note"]))
        if draw(st.booleans()):
            obj.pop(name, None)
        else:
            obj[name] = draw(ODD)
    text = json.dumps(obj, ensure_ascii=draw(st.booleans()))
    return text.encode() + draw(st.sampled_from([b"", b"\r", b" "]))


JUNK = st.sampled_from(
    [b"", b"  ", b"{", b"[1]", b"5", b'{"event_id": "e-9"', b'{"event_id": 3}', b"\xff{}", b"{}"]
)
LINES = st.lists(st.one_of(event_line(), event_line(), JUNK), max_size=12)


def ingestor() -> Ingestor:
    engine = make_engine("sqlite://")  # nothing is stored: `_store` is replaced
    return Ingestor(engine, load_config(CONFIG), now=lambda: NOW)


@pytest.fixture(scope="module")
def both() -> Ingestor:
    return ingestor()


def read(ingest: Ingestor, body: bytes, content_type: str | None, fast: bool) -> dict[str, Any]:
    """What `ingest` would store of `body` (through `ingest_body` when `fast`)."""
    seen: list[_Batch] = []

    def keep(_grant: Grant, batch: _Batch) -> BatchReport:
        seen.append(batch)
        return BatchReport(batch.event_ids, batch.statuses, batch.reasons, frozenset())

    ingest._store = keep  # type: ignore[method-assign]
    try:
        if fast:
            ingest.ingest_body(GRANT, body, content_type)
        else:
            parsed = parse_batch(body, content_type)
            ingest.ingest(GRANT, parsed, lambda: raw_pieces(body, content_type, len(parsed)))
    finally:
        del ingest._store
    (batch,) = seen
    return {
        name: getattr(batch, name)
        for name in ("event_ids", "statuses", "reasons", "rows", "first", "kept", "seqs")
    }


@settings(max_examples=300)
@given(LINES, st.sampled_from(["application/x-ndjson", None, "text/plain"]), st.booleans())
def test_json_lines_are_read_as_parse_batch_reads_them(
    both: Ingestor, lines: list[bytes], content_type: str | None, bom: bool
) -> None:
    body = (b"\xef\xbb\xbf" if bom else b"") + b"\n".join(lines)
    refused: str | None = None
    try:
        slow = read(both, body, content_type, fast=False)
    except EventError as exc:  # neither an array nor JSON Lines: refused the same way
        refused = str(exc)
    if refused is not None:
        with pytest.raises(EventError) as also:
            read(both, body, content_type, fast=True)
        assert str(also.value) == refused
        return
    fast = read(both, body, content_type, fast=True)
    assert fast == slow
    for row in fast["rows"]:  # `at` with its offset as sent, not only the same instant
        at = row[5]
        assert isinstance(at, datetime)
        assert at.utcoffset() is not None


def test_an_array_goes_through_parse_batch(both: Ingestor) -> None:
    body = json.dumps([{"event_id": "e-1"}]).encode()
    assert read(both, body, "application/json", fast=True) == read(
        both, body, "application/json", fast=False
    )


ANSWERS = st.lists(
    st.tuples(
        st.none() | st.text(),
        st.sampled_from(["accepted", "duplicate", "rejected"]),
        st.none() | st.text(),
    ),
    max_size=8,
)


@given(ANSWERS)
def test_the_answer_is_the_json_of_its_results(answers: list[tuple[Any, Any, Any]]) -> None:
    reasons = {i: reason for i, (_, _, reason) in enumerate(answers) if reason is not None}
    report = BatchReport(
        [event_id for event_id, _, _ in answers],
        [status for _, status, _ in answers],
        reasons,
        frozenset(),
    )
    written = json.dumps(report.to_json(), ensure_ascii=False, separators=(",", ":"))
    assert report.to_bytes() == written.encode("utf-8")
    assert json.loads(report.to_bytes()) == report.to_json()


def test_later_than_the_clock_allows_is_worded_as_before(both: Ingestor) -> None:
    line = {
        "event_id": "e-1",
        "case_id": "C-1",
        "department": "fgw",
        "item": "fgw-001",
        "type": "accepted",
        "at": (NOW + timedelta(seconds=301)).isoformat(),
    }
    seen = read(both, json.dumps(line).encode(), "application/x-ndjson", fast=True)
    assert seen["reasons"] == {
        0: "at: 2024-03-01T04:05:01+00:00 is later than the server's clock allows "
        "(2024-03-01T04:05:00+00:00, now plus 300 s of clock skew)"
    }
