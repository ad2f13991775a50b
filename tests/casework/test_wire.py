"""Wire format v1: one test per rule, JSON Lines and batches, and the round trip."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from casework.batches import iter_json_lines, parse_batch
from casework.errors import EventError
from casework.events import EVENT_TYPES, RESULTS, SUSPEND_REASONS, CaseEvent
from casework.wire import (
    NO_OFFSET,
    NOT_RFC3339,
    SEQ_MAX,
    WireEvent,
    dumps_line,
    parse_event,
    parse_json_line,
    to_wire,
)

CST = timezone(timedelta(hours=8))
DROP = object()  # marks a key to leave out of an example

BASE: dict[str, Any] = {
    "event_id": "E-0001",
    "case_id": "330100-2024-00001234",
    "department": "SJJ",
    "item": "330100-XK-0042",
    "type": "accepted",
    "at": "2024-03-01T09:30:00+08:00",
}
EXAMPLES: dict[str, dict[str, Any]] = {
    "accepted": {"type": "accepted", "promised_days": 5, "legal_days": 20},
    "suspended": {"type": "suspended", "reason": "expert_review", "days": 10},
    "resumed": {"type": "resumed"},
    "extended": {"type": "extended", "days": 10},
    "step": {"type": "step", "step": "审查", "handler": "张三", "step_days": 3},
    "completed": {"type": "completed", "result": "approved"},
    "withdrawn": {"type": "withdrawn"},
}

Parse = Callable[..., CaseEvent]


def wire(**changes: Any) -> dict[str, Any]:
    """BASE with `changes` applied; a value of DROP removes the key."""
    obj = {**BASE, **changes}
    return {k: v for k, v in obj.items() if v is not DROP}


@pytest.fixture(params=["object", "json"])
def parse(request: pytest.FixtureRequest) -> Parse:
    """Both ways in: a decoded object (parse_event) and a line of text (parse_json_line)."""
    if request.param == "object":
        return parse_event

    def from_text(obj: object, **kwargs: Any) -> CaseEvent:
        return parse_json_line(json.dumps(obj, ensure_ascii=False), **kwargs)

    return from_text


def rejected(parse: Parse, obj: object) -> EventError:
    with pytest.raises(EventError) as info:
        parse(obj, source="events.jsonl", line=7)
    return info.value


# --- valid events ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", EVENT_TYPES)
def test_each_event_type_parses(parse: Parse, kind: str) -> None:
    event = parse(wire(**EXAMPLES[kind]))
    assert event.type == kind
    assert event.at == datetime(2024, 3, 1, 9, 30, tzinfo=CST)
    assert event.at.utcoffset() == timedelta(hours=8)
    for name, value in EXAMPLES[kind].items():
        assert getattr(event, name) == value


def test_accepted_event_fields(parse: Parse) -> None:
    event = parse(wire(seq=42, promised_days=5, legal_days=20))
    assert event == CaseEvent(
        event_id="E-0001",
        case_id="330100-2024-00001234",
        department="SJJ",
        item="330100-XK-0042",
        type="accepted",
        at=datetime(2024, 3, 1, 9, 30, tzinfo=CST),
        seq=42,
        promised_days=5,
        legal_days=20,
    )
    assert event.case_key == ("SJJ", "330100-2024-00001234")


@pytest.mark.parametrize(
    ("text", "offset"),
    [
        ("2024-03-01T09:30:00+08:00", timedelta(hours=8)),
        ("2024-03-01T01:30:00Z", timedelta(0)),
        ("2024-02-29T20:30:00-05:00", timedelta(hours=-5)),
        ("2024-03-01t01:30:00z", timedelta(0)),
        ("2024-03-01 09:30:00+08:00", timedelta(hours=8)),
        ("2024-03-01T09:30:00.000+08:00", timedelta(hours=8)),
    ],
)
def test_timestamps_with_offset(parse: Parse, text: str, offset: timedelta) -> None:
    event = parse(wire(at=text))
    assert event.at == datetime(2024, 3, 1, 1, 30, tzinfo=UTC)
    assert event.at.utcoffset() == offset


def test_null_on_optional_field_means_absent(parse: Parse) -> None:
    event = parse(wire(type="resumed", seq=None, promised_days=None, reason=None, result=None))
    assert event.seq is None
    assert event.reason is None


def test_unknown_fields_are_kept_but_ignored(parse: Parse) -> None:
    extra = {"经办人": "张三", "source_system": {"name": "审批系统", "version": 3}}
    event = parse(wire(**extra))
    assert event.extra == extra
    assert event == parse(wire())  # extra does not take part in equality
    assert to_wire(event)["经办人"] == "张三"


def test_chinese_ids_up_to_128_characters(parse: Parse) -> None:
    event = parse(wire(event_id="事" * 128, case_id="浙" * 128, item="行政许可"))
    assert len(event.event_id) == 128


# --- one test per rule -----------------------------------------------------------------


def test_naive_timestamp_is_rejected(parse: Parse) -> None:
    err = rejected(parse, wire(at="2024-03-01T09:30:00"))
    assert (err.field, err.value, err.problem) == ("at", "2024-03-01T09:30:00", NO_OFFSET)
    assert "timestamp has no UTC offset; write e.g. 2024-03-01T09:30:00+08:00" in str(err)


@pytest.mark.parametrize(
    "text", ["2024-03-01", "2024-03-01T09:30+08:00", "01/03/2024 09:30", "1709256600", ""]
)
def test_timestamp_not_rfc3339(parse: Parse, text: str) -> None:
    err = rejected(parse, wire(at=text))
    assert (err.field, err.problem) == ("at", NOT_RFC3339)


def test_timestamp_out_of_range(parse: Parse) -> None:
    err = rejected(parse, wire(at="2024-02-30T09:30:00+08:00"))
    assert err.field == "at"
    assert err.problem.startswith("is not a valid date and time: ")


def test_timestamp_as_number(parse: Parse) -> None:
    err = rejected(parse, wire(at=1709256600))
    assert err.field == "at"
    assert "not an integer" in err.problem


def test_bad_type_lists_valid_choices(parse: Parse) -> None:
    err = rejected(parse, wire(type="closed"))
    assert (err.field, err.value, err.choices) == ("type", "closed", EVENT_TYPES)
    message = str(err)
    assert message.startswith("events.jsonl, line 7: field 'type': is not an event type")
    assert "(got 'closed')" in message
    for kind in EVENT_TYPES:
        assert repr(kind) in message


def test_missing_required_field(parse: Parse) -> None:
    err = rejected(parse, wire(type=DROP))
    assert (err.field, err.problem, err.value) == ("type", "is required", None)


@pytest.mark.parametrize("kind", ["suspended", "extended"])
def test_missing_days(parse: Parse, kind: str) -> None:
    obj = wire(**{**EXAMPLES[kind], "days": DROP})
    err = rejected(parse, obj)
    assert (err.field, err.problem) == ("days", f"is required on {kind!r} events")


def test_missing_reason_on_suspended(parse: Parse) -> None:
    err = rejected(parse, wire(type="suspended", days=3))
    assert (err.field, err.problem) == ("reason", "is required on 'suspended' events")


def test_reason_not_in_list(parse: Parse) -> None:
    err = rejected(parse, wire(type="suspended", reason="holiday", days=3))
    assert (err.field, err.value, err.choices) == ("reason", "holiday", SUSPEND_REASONS)
    assert "'expert_review'" in str(err)


def test_missing_step_on_step(parse: Parse) -> None:
    err = rejected(parse, wire(type="step", handler="张三"))
    assert (err.field, err.problem) == ("step", "is required on 'step' events")


def test_result_not_in_list(parse: Parse) -> None:
    err = rejected(parse, wire(type="completed", result="ok"))
    assert (err.field, err.value, err.choices) == ("result", "ok", RESULTS)


@pytest.mark.parametrize(
    ("field", "value", "kind"),
    [
        ("days", "5", "a string"),
        ("seq", "1", "a string"),
        ("days", 5.0, "a decimal number"),
        ("days", [5], "an array"),
    ],
)
def test_wrong_type_where_int_expected(parse: Parse, field: str, value: Any, kind: str) -> None:
    err = rejected(parse, wire(type="extended", **{field: value}))
    assert (err.field, err.value) == (field, value)
    assert err.problem == f"must be an integer, not {kind}"


@pytest.mark.parametrize(("field", "changes"), [("seq", {}), ("days", {"type": "extended"})])
def test_bool_is_not_an_int(parse: Parse, field: str, changes: dict[str, Any]) -> None:
    err = rejected(parse, wire(**changes, **{field: True}))
    assert (err.field, err.value, err.problem) == (field, True, "must be an integer, not a boolean")


@pytest.mark.parametrize(
    ("changes", "field", "problem"),
    [
        ({"seq": 0}, "seq", "must be at least 1"),
        ({"seq": SEQ_MAX + 1}, "seq", f"must be at most {SEQ_MAX}"),
        ({"case_id": "C\x001"}, "case_id", "must not contain the NUL character (U+0000)"),
        ({"type": "extended", "days": 0}, "days", "must be at least 1"),
        ({"promised_days": -1}, "promised_days", "must be at least 0"),
        ({"type": "step", "step": "审查", "step_days": -1}, "step_days", "must be at least 0"),
    ],
)
def test_numbers_and_text_out_of_range(
    parse: Parse, changes: dict[str, Any], field: str, problem: str
) -> None:
    err = rejected(parse, wire(**changes))
    assert (err.field, err.problem) == (field, problem)


@pytest.mark.parametrize("field", ["event_id", "case_id"])
def test_id_too_long(parse: Parse, field: str) -> None:
    err = rejected(parse, wire(**{field: "x" * 129}))
    assert (err.field, err.problem) == (field, "must be at most 128 characters long")


@pytest.mark.parametrize("field", ["event_id", "case_id", "department", "item"])
def test_empty_string_rejected(parse: Parse, field: str) -> None:
    err = rejected(parse, wire(**{field: ""}))
    assert (err.field, err.problem) == (field, "must not be empty")


@pytest.mark.parametrize("field", ["event_id", "department"])
def test_wrong_type_where_string_expected(parse: Parse, field: str) -> None:
    err = rejected(parse, wire(**{field: 12}))
    assert (err.field, err.problem) == (field, "must be a string, not an integer")
    err = rejected(parse, wire(**{field: None}))
    assert (err.field, err.problem) == (field, "must be a string, not null")


@pytest.mark.parametrize(
    ("changes", "field", "allowed"),
    [
        ({"type": "completed", "promised_days": 5}, "promised_days", "'accepted'"),
        (
            {"type": "suspended", "reason": "hearing", "days": 3, "legal_days": 2},
            "legal_days",
            "'accepted'",
        ),
        ({"type": "resumed", "days": 3}, "days", "'suspended' and 'extended'"),
        ({"type": "extended", "days": 3, "reason": "other"}, "reason", "'suspended'"),
        ({"type": "accepted", "result": "approved"}, "result", "'completed'"),
        ({"type": "completed", "handler": "张三"}, "handler", "'step'"),
    ],
)
def test_type_specific_field_on_another_type(
    parse: Parse, changes: dict[str, Any], field: str, allowed: str
) -> None:
    err = rejected(parse, wire(**changes))
    assert err.field == field
    assert err.problem == f"is only allowed on {allowed} events, not on {changes['type']!r}"
    assert f"field {field!r}" in str(err)


@pytest.mark.parametrize("value", [[1], "event", 3, None])
def test_not_an_object(parse: Parse, value: object) -> None:
    err = rejected(parse, value)
    assert err.field == ""
    assert err.problem.startswith("an event must be a JSON object, not ")


def test_first_offending_field_in_table_order(parse: Parse) -> None:
    """The same field is reported whatever the key order and however many are wrong."""
    bad = wire(type="suspended", days="5", reason="holiday", event_id="", item=7)
    backwards = dict(reversed(list(bad.items())))
    assert rejected(parse, bad).field == "event_id"
    assert rejected(parse, backwards).field == "event_id"
    # a rule tied to the type is still reported in table order: reason comes before days
    assert rejected(parse, wire(type="suspended", days="5")).field == "reason"
    # an unreadable type is reported, not the type-specific fields after it
    assert rejected(parse, wire(type="closed", days="5")).field == "type"


def test_non_string_key_rejected() -> None:
    bad: dict[Any, Any] = {**BASE, 1: "x"}
    with pytest.raises(EventError, match="field names must be strings"):
        parse_event(bad)


# --- JSON text and JSON Lines ----------------------------------------------------------


def line(**changes: Any) -> str:
    return json.dumps(wire(**changes), ensure_ascii=False)


def test_parse_json_line_malformed_and_blank() -> None:
    with pytest.raises(EventError) as info:
        parse_json_line('{"event_id": "E-1",', source="a.jsonl", line=3)
    assert info.value.field == ""
    assert info.value.problem.startswith("malformed JSON: ")
    assert str(info.value).startswith("a.jsonl, line 3: malformed JSON")
    with pytest.raises(EventError, match="line is blank"):
        parse_json_line("  \n")


def test_iter_json_lines_goes_on_after_bad_lines() -> None:
    lines = [
        line(event_id="E-1") + "\n",
        '{"event_id": "E-2", "case_id": \n',
        "\n",
        line(event_id="E-4", type="withdrawn") + "\r\n",
        "[1, 2]\n",
        "   \n",
        line(event_id="E-7", at="2024-03-01T09:30:00") + "\n",
        line(event_id="E-8"),
    ]
    got = list(iter_json_lines(lines, source="cases.jsonl"))
    assert [n for n, _ in got] == [1, 2, 4, 5, 7, 8]
    results = dict(got)
    assert isinstance(results[1], CaseEvent)
    assert results[1].event_id == "E-1"
    assert isinstance(results[2], EventError)
    assert results[2].line == 2
    assert results[2].source == "cases.jsonl"
    assert str(results[2]).startswith("cases.jsonl, line 2: malformed JSON")
    assert isinstance(results[4], CaseEvent)
    assert results[4].type == "withdrawn"
    assert isinstance(results[5], EventError)
    assert "not an array" in results[5].problem
    assert isinstance(results[7], EventError)
    assert (results[7].field, results[7].line) == ("at", 7)
    assert isinstance(results[8], CaseEvent)
    assert results[8].event_id == "E-8"


def test_iter_json_lines_bom_on_first_line_only() -> None:
    lines = ["\ufeff" + line(event_id="E-1"), "\ufeff" + line(event_id="E-2")]
    got = list(iter_json_lines(lines, source="bom.jsonl"))
    assert isinstance(got[0][1], CaseEvent)
    assert isinstance(got[1][1], EventError)
    assert got[1][0] == 2


def test_iter_json_lines_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "导出.jsonl"
    path.write_text(
        "\ufeff" + line(event_id="E-1") + "\n\n" + line(event_id="E-3", type="x") + "\n",
        encoding="utf-8",
    )
    with path.open(encoding="utf-8") as handle:
        got = list(iter_json_lines(handle, source=str(path)))
    assert [n for n, _ in got] == [1, 3]
    assert isinstance(got[0][1], CaseEvent)
    assert isinstance(got[1][1], EventError)
    assert got[1][1].field == "type"


# --- batches ---------------------------------------------------------------------------


def events_and_errors(
    results: list[CaseEvent | EventError],
) -> list[str]:
    return [r.event_id if isinstance(r, CaseEvent) else f"error:{r.field}" for r in results]


def test_batch_json_array() -> None:
    body = json.dumps(
        [wire(event_id="E-1"), wire(event_id="E-2", type="closed"), wire(event_id="E-3")],
        ensure_ascii=False,
        indent=2,
    ).encode()
    results = parse_batch(body, "application/json")
    assert events_and_errors(results) == ["E-1", "error:type", "E-3"]
    assert isinstance(results[1], EventError)
    assert results[1].source == "batch[1]"
    assert results[1].reason.startswith("type: is not an event type (got 'closed')")


@pytest.mark.parametrize(
    "content_type",
    ["application/x-ndjson", "application/x-ndjson; charset=utf-8", None, "application/json"],
)
def test_batch_json_lines(content_type: str | None) -> None:
    body = "\n".join(
        [line(event_id="E-1"), "{oops", "", line(event_id="E-4", days="5", type="extended")]
    )
    results = parse_batch(("\ufeff" + body + "\r\n").encode(), content_type)
    assert events_and_errors(results) == ["E-1", "error:", "error:days"]
    assert [r.line for r in results if isinstance(r, EventError)] == [2, 4]


def test_batch_array_under_ndjson_content_type_is_read_as_lines() -> None:
    body = b"[1]\n" + line(event_id="E-2").encode()
    assert events_and_errors(parse_batch(body, "application/x-ndjson")) == ["error:", "E-2"]


def test_batch_single_pretty_printed_object() -> None:
    body = json.dumps(wire(), indent=2).encode()
    assert events_and_errors(parse_batch(body, "application/json")) == ["E-0001"]


def test_batch_invalid_utf8_line_spares_the_others() -> None:
    body = line(event_id="E-1").encode() + b"\n" + b'{"event_id": "\xff"}\n'
    assert events_and_errors(parse_batch(body, None)) == ["E-1", "error:"]


@pytest.mark.parametrize("body", [b"", b"  \n\n ", b"[]", b"\xef\xbb\xbf"])
def test_batch_empty(body: bytes) -> None:
    assert parse_batch(body, "application/json") == []


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b'[{"event_id": 1},', "body is not a readable JSON array"),
        (b"event_id=E-1&type=accepted", "body is neither a JSON array"),
        (b'"just a string"', "body is neither a JSON array"),
    ],
)
def test_batch_unreadable_body(body: bytes, problem: str) -> None:
    with pytest.raises(EventError) as info:
        parse_batch(body, "application/json")
    assert info.value.problem.startswith(problem)
    assert info.value.source == "batch"


# --- writing ---------------------------------------------------------------------------


def test_to_wire_omits_none_and_keeps_offset_and_extra() -> None:
    event = parse_event(wire(type="suspended", reason="hearing", days=2, 备注="听证"))
    assert to_wire(event) == {
        "event_id": "E-0001",
        "case_id": "330100-2024-00001234",
        "department": "SJJ",
        "item": "330100-XK-0042",
        "type": "suspended",
        "at": "2024-03-01T09:30:00+08:00",
        "reason": "hearing",
        "days": 2,
        "备注": "听证",
    }


def test_to_wire_extra_cannot_override_a_field() -> None:
    event = CaseEvent(
        event_id="E-1",
        case_id="C-1",
        department="SJJ",
        item="X",
        type="resumed",
        at=datetime(2024, 3, 1, 9, 30, tzinfo=CST),
        extra={"type": "accepted", "days": 3, "note": "n"},
    )
    out = to_wire(event)
    assert (out["type"], "days" in out, out["note"]) == ("resumed", False, "n")


def test_to_wire_sub_minute_offset_becomes_utc() -> None:
    lmt = timezone(timedelta(hours=8, minutes=5, seconds=43))
    event = replace(parse_event(wire()), at=datetime(1920, 1, 1, 8, 5, 43, tzinfo=lmt))
    assert to_wire(event)["at"] == "1920-01-01T00:00:00+00:00"
    assert parse_event(to_wire(event)) == event


def test_dumps_line_is_compact_utf8_without_newline() -> None:
    event = parse_event(wire(item="行政许可-0042"))
    text = dumps_line(event)
    assert "\n" not in text
    assert "行政许可" in text
    assert ", " not in text
    assert ": " not in text
    assert parse_json_line(text) == event


# --- round trip ------------------------------------------------------------------------

WIRE_FIELDS = frozenset(WireEvent.model_fields)
CHINESE = st.sampled_from(["市场监督管理局", "行政许可-0042", "张三", "特别程序·听证", "办结"])
#: Any Unicode text but a NUL character, which no field may hold (no store could keep it).
KEEPABLE = st.characters(codec="utf-8", exclude_characters="\x00")
NAMES = st.one_of(CHINESE, st.text(KEEPABLE, min_size=1, max_size=40))
IDS = st.one_of(CHINESE, st.text(KEEPABLE, min_size=1, max_size=128))
OFFSETS = st.sampled_from(
    [
        CST,
        UTC,
        timezone(timedelta(hours=-5)),
        timezone(timedelta(hours=5, minutes=45)),
        timezone(timedelta(hours=-9, minutes=-30)),
        timezone(timedelta(hours=8, minutes=5, seconds=43)),
    ]
)
TIMES = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2100, 12, 31), timezones=OFFSETS
)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)
EXTRA = st.dictionaries(
    st.text(min_size=1, max_size=10).filter(lambda k: k not in WIRE_FIELDS), JSON_VALUES, max_size=3
)
DAYS = st.integers(min_value=0, max_value=10_000)


@st.composite
def case_events(draw: st.DrawFn) -> CaseEvent:
    kind = draw(st.sampled_from(EVENT_TYPES))
    fields: dict[str, Any] = {}
    if kind == "accepted":
        fields["promised_days"] = draw(st.none() | DAYS)
        fields["legal_days"] = draw(st.none() | DAYS)
    elif kind == "suspended":
        fields["reason"] = draw(st.sampled_from(SUSPEND_REASONS))
        fields["days"] = draw(st.integers(min_value=1, max_value=10_000))
    elif kind == "extended":
        fields["days"] = draw(st.integers(min_value=1))
    elif kind == "step":
        fields["step"] = draw(NAMES)
        fields["handler"] = draw(st.none() | st.text(KEEPABLE) | CHINESE)
        fields["step_days"] = draw(st.none() | DAYS)
    elif kind == "completed":
        fields["result"] = draw(st.none() | st.sampled_from(RESULTS))
    return CaseEvent(
        event_id=draw(IDS),
        case_id=draw(IDS),
        department=draw(NAMES),
        item=draw(NAMES),
        type=kind,  # type: ignore[arg-type]
        at=draw(TIMES),
        seq=draw(st.none() | st.integers(min_value=1, max_value=SEQ_MAX)),
        extra=draw(EXTRA),
        **fields,
    )


@given(case_events())
def test_round_trip_through_dict(event: CaseEvent) -> None:
    back = parse_event(to_wire(event))
    assert back == event
    assert back.extra == event.extra


@given(case_events())
def test_round_trip_through_json_line(event: CaseEvent) -> None:
    text = dumps_line(event)
    back = parse_json_line(text)
    assert back == event
    assert back.extra == event.extra
    assert list(iter_json_lines([text + "\n"], source="x")) == [(1, event)]


# --- documentation ---------------------------------------------------------------------

DOC = Path(__file__).resolve().parents[2] / "docs" / "wire-format.md"


def test_every_example_in_the_docs_is_valid() -> None:
    """Each line of a ```jsonl block in docs/wire-format.md is a valid event."""
    blocks = re.findall(r"```jsonl\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    seen = set()
    for block in blocks:
        for number, result in iter_json_lines(block.splitlines(), source=str(DOC)):
            assert isinstance(result, CaseEvent), f"line {number}: {result}"
            seen.add(result.type)
    assert seen == set(EVENT_TYPES)


def test_a_line_that_is_not_unicode_is_an_event_error_not_a_crash() -> None:
    """A str holding a lone surrogate (text decoded with surrogateescape, say)."""
    text = json.dumps({**to_wire_base(), "item": "\ud800"}, ensure_ascii=False)
    with pytest.raises(EventError) as caught:
        parse_json_line(text, source="s", line=3)
    assert caught.value.problem == "text is not valid UTF-8"


def to_wire_base() -> dict[str, Any]:
    return {
        "event_id": "e-1",
        "case_id": "C-1",
        "department": "fgw",
        "item": "fgw-001",
        "type": "accepted",
        "at": "2024-03-01T09:30:00+08:00",
    }
