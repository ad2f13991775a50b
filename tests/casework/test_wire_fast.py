"""The fast path of `parse_event` / `parse_json_line` says exactly what pydantic says.

Well-formed events skip `WireEvent`; anything in doubt goes through it. Each
test compares the public functions with `WireEvent` alone on events that are
valid, and on the same events with one field replaced by an arbitrary JSON
value or dropped, so every accepted event and every error must be identical.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from test_wire import JSON_VALUES, case_events, to_wire_base

from casework import wire
from casework.errors import EventError
from casework.events import CaseEvent
from casework.wire import WireEvent, parse_event, parse_json_line, to_wire

FIELDS = [*WireEvent.model_fields, "source"]
ODD_VALUES = st.one_of(
    JSON_VALUES,
    st.sampled_from(
        [
            "",
            "x" * 128,
            "x" * 129,
            0,
            -1,
            1,
            True,
            5.0,
            "2024-03-01T09:30:00",
            "2024-03-01T09:30+08:00",
            "2024-02-30T09:30:00+08:00",
            "2024-03-01t09:30:00z",
            "2024-03-01 09:30:00.5-05:00",
            "accepted",
            "completed",
            "step",
            "approved",
            "expert_review",
        ]
    ),
)


def slow(obj: object) -> CaseEvent | str:
    """What pydantic alone makes of `obj`: the event, or the error's text."""
    try:
        return wire._event(WireEvent.model_validate(obj))
    except ValidationError as exc:
        return str(wire._first_error(exc, "s", 3))


def fast(obj: object) -> CaseEvent | str:
    try:
        return parse_event(obj, source="s", line=3)
    except EventError as exc:
        return str(exc)


def same(a: CaseEvent | str, b: CaseEvent | str) -> bool:
    if isinstance(a, CaseEvent) and isinstance(b, CaseEvent):
        return a == b and a.extra == b.extra and a.at.utcoffset() == b.at.utcoffset()
    return a == b


@st.composite
def altered(draw: st.DrawFn) -> dict[str, Any]:
    obj = to_wire(draw(case_events()))
    for _ in range(draw(st.integers(min_value=0, max_value=2))):
        name = draw(st.sampled_from(FIELDS))
        if draw(st.booleans()):
            obj.pop(name, None)
        else:
            obj[name] = draw(ODD_VALUES)
    return obj


@given(altered())
def test_a_decoded_event_is_read_as_pydantic_reads_it(obj: dict[str, Any]) -> None:
    assert same(fast(obj), slow(obj))


@given(altered())
def test_a_line_is_read_as_pydantic_reads_it(obj: dict[str, Any]) -> None:
    text = json.dumps(obj, ensure_ascii=False)
    try:
        got: CaseEvent | str = parse_json_line(text, source="s", line=3)
    except EventError as exc:
        got = str(exc)
    try:
        want: CaseEvent | str = wire._event(WireEvent.model_validate_json(text))
    except ValidationError as exc:
        want = str(wire._first_error(exc, "s", 3))
    assert same(got, want)


def test_not_a_dict_and_odd_keys_take_the_slow_path() -> None:
    for obj in ([], "x", None, 5, {**to_wire_base(), 1: "x"}):
        assert same(fast(obj), slow(obj))
