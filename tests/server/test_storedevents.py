"""Stored bodies read back without validating again give what validation gives."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from casework.errors import EventError
from casework.events import EVENT_TYPES, SUSPEND_REASONS
from casework.wire import parse_event
from server.storedevents import stored_event

OFFSETS = st.integers(-12 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
INSTANTS = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31), timezones=OFFSETS
)
# Text a body stored since ingest checks for NUL can hold (a NUL is rejected on the way in).
TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=12)
EXTRA = st.dictionaries(
    st.sampled_from(["source", "note", "x_flag", "agent_level"]),
    st.none() | st.integers() | st.text(max_size=5) | st.booleans(),
    max_size=3,
)


@st.composite
def bodies(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(EVENT_TYPES))
    at = draw(INSTANTS).isoformat()
    body: dict[str, Any] = {
        "event_id": draw(TEXT),
        "case_id": draw(TEXT),
        "department": draw(TEXT),
        "item": draw(TEXT),
        "type": kind,
        "at": draw(st.sampled_from([at, at.lower(), at.replace("+00:00", "Z")])),
        **draw(EXTRA),
    }
    if draw(st.booleans()):
        body["seq"] = draw(st.integers(1, 2**40))
    if kind == "accepted":
        body["promised_days"] = draw(st.integers(0, 100))
        body["legal_days"] = draw(st.integers(0, 100))
    elif kind == "suspended":
        body["reason"] = draw(st.sampled_from(SUSPEND_REASONS))
        body["days"] = draw(st.integers(1, 100))
    elif kind == "extended":
        body["days"] = draw(st.integers(1, 100))
    elif kind == "step":
        body["step"] = draw(TEXT)
        body["handler"] = draw(st.none() | TEXT)
    elif kind == "completed":
        body["result"] = "approved"
    return body


@given(bodies())
def test_a_stored_body_reads_back_as_validation_reads_it(body: dict[str, Any]) -> None:
    text = json.dumps(body, ensure_ascii=False)
    fast = stored_event(text)
    slow = parse_event(body)
    assert fast == slow
    assert fast.extra == slow.extra
    assert fast.at == slow.at
    assert fast.at.utcoffset() == slow.at.utcoffset()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"seq": True}, "seq"),
        ({"days": "3"}, "days"),
        ({"at": "2024-03-01T09:30:00"}, "at"),
        ({"type": "closed"}, "type"),
        ({"item": None}, "item"),
    ],
)
def test_anything_unusual_gets_the_full_validation(change: dict[str, Any], field: str) -> None:
    body = {
        "event_id": "e1",
        "case_id": "c1",
        "department": "fgw",
        "item": "fgw-001",
        "type": "extended",
        "days": 2,
        "at": datetime(2024, 3, 1, 1, 30, tzinfo=UTC).isoformat(),
        **change,
    }
    with pytest.raises(EventError) as caught:
        stored_event(json.dumps(body), "stored event of fgw/c1")
    assert caught.value.field == field
    assert "stored event of fgw/c1" in str(caught.value)
