"""Wire format v1: case events as JSON, validated into `CaseEvent`.

The agent and the server both read and write events through this module only,
so one set of rules and one set of error messages holds on both sides. The
rules are those of the design document's "Events (wire format v1)" table;
docs/wire-format.md lists them with an example of each event type.

Reading:

    parse_event(obj)          one decoded JSON object -> CaseEvent
    parse_json_line(text)     one line of JSON text -> CaseEvent
    event_fields(obj)         a plainly well-formed event's common fields, else None (ingest)

Whole files and ingest bodies are read by `casework.batches` with these.

Writing:

    to_wire(event)            CaseEvent -> JSON-ready dict
    dumps_line(event)         CaseEvent -> one compact JSON line (no newline)

Every rule violation is an `EventError` naming the first offending field in
the order of the table (event_id, seq, case_id, department, item, type, at,
promised_days, legal_days, reason, days, step, handler, step_days, result),
whatever order the keys arrived in. Types are strict: ``"5"`` is not an
integer and ``true`` is not one either. ``null`` on an optional field means
the field is absent. Unknown fields are kept in `CaseEvent.extra` and
otherwise ignored.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, cast

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError, from_json

from casework.errors import EventError
from casework.events import EVENT_TYPES, RESULTS, SUSPEND_REASONS, CaseEvent, EventType

__all__ = [
    "NOT_RFC3339",
    "NO_OFFSET",
    "EventFields",
    "WireEvent",
    "dumps_line",
    "event_fields",
    "parse_event",
    "parse_json_line",
    "to_wire",
]

#: Reason given for a timestamp without a UTC offset.
NO_OFFSET: Final = "timestamp has no UTC offset; write e.g. 2024-03-01T09:30:00+08:00"
#: Reason given for a string that is not an RFC 3339 date-time at all.
NOT_RFC3339: Final = "is not an RFC 3339 timestamp; write e.g. 2024-03-01T09:30:00+08:00"

# A date-time, the offset optional so that a missing offset gets its own reason;
# seconds optional only so that "09:30" without an offset is still called naive.
_AT_PATTERN: Final = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(?:\.\d+)?)?([Zz]|[+-]\d{2}:\d{2})?"
)
# `_AT_PATTERN` with both its optional parts, seconds and offset: what `_parse_at` reads.
_AT_COMPLETE: Final = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})"
)
_EVENT_TYPES: Final = frozenset(EVENT_TYPES)

# Type-specific fields: the event types each may appear on, the types that
# require it, and the fixed set its value must come from.
_ALLOWED_ON: Final[dict[str, tuple[str, ...]]] = {
    "promised_days": ("accepted",),
    "legal_days": ("accepted",),
    "reason": ("suspended",),
    "days": ("suspended", "extended"),
    "step": ("step",),
    "handler": ("step",),
    "step_days": ("step",),
    "result": ("completed",),
}
_REQUIRED_ON: Final[dict[str, tuple[str, ...]]] = {
    "reason": ("suspended",),
    "days": ("suspended", "extended"),
    "step": ("step",),
}
_CHOICES: Final[dict[str, tuple[str, ...]]] = {"reason": SUSPEND_REASONS, "result": RESULTS}
_CHOICE_PROBLEM: Final[dict[str, str]] = {
    "reason": "is not a suspension reason",
    "result": "is not a completion result",
}


def _kind(value: object) -> str:
    """The JSON name of a value's type, for 'must be X, not Y' reasons."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _quoted(names: Iterable[str]) -> str:
    return " and ".join(repr(n) for n in names)


def _parse_at(value: object) -> datetime:
    """Validate `at`: an RFC 3339 date-time string with an offset -> aware datetime."""
    if not isinstance(value, str):
        raise PydanticCustomError(
            "wire",
            "must be an RFC 3339 timestamp string such as 2024-03-01T09:30:00+08:00, not "
            + _kind(value),
        )
    match = _AT_PATTERN.fullmatch(value)
    if match is None:
        raise PydanticCustomError("wire", NOT_RFC3339)
    if match.group(2) is None:
        raise PydanticCustomError("wire", NO_OFFSET)
    if match.group(1) is None:
        raise PydanticCustomError("wire", NOT_RFC3339)
    try:
        # RFC 3339 allows lower-case 't' and 'z'; fromisoformat does not.
        instant = datetime.fromisoformat(value.upper())
        instant.astimezone(UTC)  # 0001-01-01T00:30+01:00 has no UTC instant a store can hold
    except (ValueError, OverflowError) as exc:
        raise PydanticCustomError(
            "wire", "is not a valid date and time: {error}", {"error": str(exc)}
        ) from exc
    return instant


#: The largest `seq`: what the stores keep in a signed 64-bit integer.
SEQ_MAX: Final = 2**63 - 1


def _no_nul(value: str) -> str:
    """Text the stores can keep: PostgreSQL's text holds no NUL character."""
    if "\x00" in value:
        raise PydanticCustomError("wire", "must not contain the NUL character (U+0000)")
    return value


Text = Annotated[str, AfterValidator(_no_nul)]
Id = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_no_nul)]
Name = Annotated[str, Field(min_length=1), AfterValidator(_no_nul)]
Count = Annotated[int, Field(ge=0)]
Positive = Annotated[int, Field(ge=1)]
SeqNumber = Annotated[int, Field(ge=1, le=SEQ_MAX)]


class WireEvent(BaseModel):
    """One wire-format v1 event, validated (strict types, fields in table order).

    Field order is the order errors are looked for, so the first offending
    field is always the same one for the same input. Type-specific fields are
    checked against `type`: a field required on a type and missing is
    rejected, and so is a field present on a type it does not belong to.
    Unknown fields land in `model_extra`.
    """

    model_config = ConfigDict(strict=True, extra="allow", frozen=True)

    event_id: Id
    seq: SeqNumber | None = None
    case_id: Id
    department: Name
    item: Name
    type: str
    at: Annotated[datetime, PlainValidator(_parse_at)]
    promised_days: Count | None = Field(default=None, validate_default=True)
    legal_days: Count | None = Field(default=None, validate_default=True)
    reason: Text | None = Field(default=None, validate_default=True)
    days: Positive | None = Field(default=None, validate_default=True)
    step: Name | None = Field(default=None, validate_default=True)
    handler: Text | None = Field(default=None, validate_default=True)
    step_days: Count | None = Field(default=None, validate_default=True)
    result: Text | None = Field(default=None, validate_default=True)

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value not in EVENT_TYPES:
            raise PydanticCustomError("wire", "is not an event type", {"choices": EVENT_TYPES})
        return value

    @field_validator(*_ALLOWED_ON)
    @classmethod
    def _fits_type(cls, value: object, info: ValidationInfo) -> object:
        kind = info.data.get("type")
        if kind is None:  # `type` itself was wrong; that is the error reported
            return value
        name = cast(str, info.field_name)
        if value is None:
            if kind in _REQUIRED_ON.get(name, ()):
                raise PydanticCustomError("wire", f"is required on {kind!r} events")
            return value
        allowed = _ALLOWED_ON[name]
        if kind not in allowed:
            raise PydanticCustomError(
                "wire", f"is only allowed on {_quoted(allowed)} events, not on {kind!r}"
            )
        choices = _CHOICES.get(name)
        if choices is not None and value not in choices:
            raise PydanticCustomError("wire", _CHOICE_PROBLEM[name], {"choices": choices})
        return value


def _error(details: ErrorDetails, source: str, line: int | None) -> EventError:
    """Translate pydantic's first error into an EventError with esup's wording."""
    loc = details["loc"]
    field = str(loc[0]) if loc else ""
    code = details["type"]
    value: object = details.get("input")
    ctx = details.get("ctx") or {}
    choices: tuple[str, ...] | None = None
    if code == "missing":
        problem, value = "is required", None
    elif code == "string_type":
        problem = f"must be a string, not {_kind(value)}"
    elif code == "int_type":
        problem = f"must be an integer, not {_kind(value)}"
    elif code == "greater_than_equal":
        problem = f"must be at least {ctx['ge']}"
    elif code == "less_than_equal":
        problem = f"must be at most {ctx['le']}"
    elif code == "string_too_short":
        problem = "must not be empty"
    elif code == "string_too_long":
        problem = f"must be at most {ctx['max_length']} characters long"
    elif code == "model_type":
        problem, value = f"an event must be a JSON object, not {_kind(value)}", None
    elif code == "json_invalid":
        problem, value = f"malformed JSON: {ctx['error']}", None
    elif code == "invalid_key":
        problem, field, value = "field names must be strings", "", loc[0] if loc else None
    elif code == "string_unicode":
        problem, value = "text is not valid UTF-8", None
    elif code == "wire":
        problem, choices = details["msg"], ctx.get("choices")
    else:  # a pydantic check esup has no wording for yet; keep pydantic's
        problem = details["msg"]
    return EventError(problem, field=field, value=value, source=source, line=line, choices=choices)


def _first_error(exc: ValidationError, source: str, line: int | None) -> EventError:
    return _error(exc.errors(include_url=False)[0], source, line)


def _event(wire: WireEvent) -> CaseEvent:
    return CaseEvent(
        event_id=wire.event_id,
        case_id=wire.case_id,
        department=wire.department,
        item=wire.item,
        type=cast(EventType, wire.type),
        at=wire.at,
        seq=wire.seq,
        promised_days=wire.promised_days,
        legal_days=wire.legal_days,
        reason=wire.reason,
        days=wire.days,
        step=wire.step,
        handler=wire.handler,
        step_days=wire.step_days,
        result=wire.result,
        extra=wire.model_extra or {},
    )


_ID_MAX: Final = 128
_NOT_NEGATIVE: Final = frozenset({"promised_days", "legal_days", "step_days"})


def _plain_int(value: object, least: int) -> bool:
    return type(value) is int and value >= least


_TYPE_SPECIFIC: Final = frozenset(_ALLOWED_ON)
#: The fields every event has or may have whatever its type.
_BASIC: Final = frozenset({"event_id", "seq", "case_id", "department", "item", "type", "at"})
_REQUIRED_FOR: Final[dict[str, tuple[str, ...]]] = {
    kind: tuple(name for name, kinds in _REQUIRED_ON.items() if kind in kinds)
    for kind in EVENT_TYPES
}


def _fits(obj: dict[str, Any], kind: str) -> bool:
    """Whether the type-specific fields of `obj` are all right for a `kind` event."""
    for name in _REQUIRED_FOR[kind]:
        if obj.get(name) is None:
            return False
    for name in _TYPE_SPECIFIC.intersection(obj):
        value = obj[name]
        if value is None:
            continue
        if kind not in _ALLOWED_ON[name]:
            return False
        if name in _NOT_NEGATIVE:
            ok = _plain_int(value, 0)
        elif name == "days":
            ok = _plain_int(value, 1)
        elif name == "step":
            ok = type(value) is str and len(value) >= 1 and "\x00" not in value
        else:  # reason, handler, result
            ok = type(value) is str and value in _CHOICES.get(name, (value,))
            ok = ok and "\x00" not in value
        if not ok:
            return False
    return True


#: A plainly well-formed event's common fields, as `event_fields` reads them:
#: (event_id, case_id, department, item, type, at, seq).
EventFields = tuple[str, str, str, str, str, datetime, int | None]


def event_fields(obj: object) -> EventFields | None:
    """The common fields of `obj` when it is a plainly well-formed event; None for anything
    else, which `WireEvent` then validates, so that every error is worded by one path.

    The same checks as `WireEvent`, written out for the common case: a dict of
    the exact JSON types, no field in doubt, every key a string. When this
    answers, `parse_event(obj)` is the `CaseEvent` of these fields, the
    type-specific ones of `obj` and the others as `extra` (`_fast_event`);
    ingest reads the fields without building it.
    """
    if type(obj) is not dict:
        return None
    event_id = obj.get("event_id")
    case_id = obj.get("case_id")
    department = obj.get("department")
    item = obj.get("item")
    kind = obj.get("type")
    at = obj.get("at")
    seq = obj.get("seq")
    basic = obj.keys() <= _BASIC  # no type-specific field, nothing unknown: the usual event
    if not (
        type(event_id) is str
        and 1 <= len(event_id) <= _ID_MAX
        and type(case_id) is str
        and 1 <= len(case_id) <= _ID_MAX
        and type(department) is str
        and department
        and type(item) is str
        and item
        and type(kind) is str
        and kind in _EVENT_TYPES
        and type(at) is str
        and (seq is None or (type(seq) is int and 1 <= seq <= SEQ_MAX))
        and "\x00" not in event_id
        and "\x00" not in case_id
        and "\x00" not in department
        and "\x00" not in item
        and (not _REQUIRED_FOR[kind] if basic else _fits(obj, kind))
        and _AT_COMPLETE.fullmatch(at) is not None
    ):
        return None
    try:
        instant = datetime.fromisoformat(at.upper())
    except ValueError:
        return None
    if not 1 < instant.year < 9999:  # its UTC instant may be out of range: `_parse_at` says
        return None
    if not basic:
        for key in obj:
            if type(key) is not str:
                return None
    return event_id, case_id, department, item, kind, instant, seq


def _fast_event(obj: object) -> CaseEvent | None:
    """`obj` as a `CaseEvent` when `event_fields` reads it; None for anything else.

    Ingest reads thousands of events a second; pydantic's generality costs
    several times this.
    """
    fields = event_fields(obj)
    if fields is None:
        return None
    assert type(obj) is dict  # event_fields reads nothing else
    if obj.keys() <= _BASIC:  # no type-specific field, nothing unknown: the usual event
        return CaseEvent(*fields)  # type: ignore[arg-type]
    extra = {key: value for key, value in obj.items() if key not in _FIELDS}
    # Positional, in CaseEvent's field order: a frozen dataclass's keywords cost twice as much.
    return CaseEvent(
        *fields,  # type: ignore[arg-type]
        obj.get("promised_days"),
        obj.get("legal_days"),
        obj.get("reason"),
        obj.get("days"),
        obj.get("step"),
        obj.get("handler"),
        obj.get("step_days"),
        obj.get("result"),
        extra,
    )


def parse_event(obj: object, *, source: str = "", line: int | None = None) -> CaseEvent:
    """Validate one decoded JSON value (normally a dict) into a `CaseEvent`.

    `source` and `line` only label the error. Raises `EventError` for the
    first offending field in table order, with its value and, for fixed sets
    (type, reason, result), the valid choices. Unknown keys go to `extra`.
    """
    fast = _fast_event(obj)
    if fast is not None:
        return fast
    try:
        wire = WireEvent.model_validate(obj)
    except ValidationError as exc:
        raise _first_error(exc, source, line) from None
    return _event(wire)


def parse_json_line(text: str | bytes, *, source: str = "", line: int | None = None) -> CaseEvent:
    """Parse one line of JSON text (str, or UTF-8 bytes) holding one event object.

    The same rules as `parse_event`; malformed JSON, a blank line and a JSON
    value that is not an object are `EventError`s with an empty `field`.
    Surrounding whitespace and a trailing newline are fine; a byte-order mark
    is not (`iter_json_lines` strips one on the first line of a file).
    """
    try:
        fast = _fast_event(from_json(text))
    except (ValueError, TypeError):  # TypeError: a str that is not Unicode (a lone surrogate)
        fast = None  # unreadable: the validation below says why
    if fast is not None:
        return fast
    try:
        wire = WireEvent.model_validate_json(text)
    except ValidationError as exc:
        if not text.strip():
            raise EventError(
                "line is blank; expected one JSON object", source=source, line=line
            ) from None
        raise _first_error(exc, source, line) from None
    return _event(wire)


_OPTIONAL: Final[tuple[str, ...]] = (
    "promised_days",
    "legal_days",
    "reason",
    "days",
    "step",
    "handler",
    "step_days",
    "result",
)
_FIELDS: Final[frozenset[str]] = frozenset(WireEvent.model_fields)


def _format_at(at: datetime) -> str:
    offset = at.utcoffset()
    if offset is None:  # CaseEvent refuses naive times; this guards hand-made objects
        raise EventError(NO_OFFSET, field="at", value=at.isoformat())
    if offset % timedelta(minutes=1):
        # RFC 3339 offsets are whole minutes; say the same instant in UTC.
        at = at.astimezone(UTC)
    return at.isoformat()


def to_wire(event: CaseEvent) -> dict[str, object]:
    """The JSON-ready dict of `event`: the inverse of `parse_event`.

    Fields that are None are left out; `at` is RFC 3339 with its own offset
    (an offset with seconds, which RFC 3339 cannot say, becomes UTC); keys of
    `extra` follow, except those that name a wire field. For every valid
    event ``parse_event(to_wire(e)) == e``. Raises `EventError` when `at` is
    naive.
    """
    out: dict[str, object] = {"event_id": event.event_id}
    if event.seq is not None:
        out["seq"] = event.seq
    out["case_id"] = event.case_id
    out["department"] = event.department
    out["item"] = event.item
    out["type"] = event.type
    out["at"] = _format_at(event.at)
    for name in _OPTIONAL:
        value = getattr(event, name)
        if value is not None:
            out[name] = value
    for key, value in event.extra.items():
        if key not in _FIELDS:
            out[key] = value
    return out


def dumps_line(event: CaseEvent) -> str:
    """One compact JSON line for `event` (UTF-8 text kept as is, no trailing newline)."""
    return json.dumps(to_wire(event), ensure_ascii=False, separators=(",", ":"))
