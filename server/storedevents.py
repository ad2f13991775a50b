"""Stored events read back: their bodies decoded without validating them again.

    stored_event(body, source) -> CaseEvent

Every body in `events` passed `casework.wire` validation when it was accepted,
so reading it back needs only JSON decoding and the same timestamp conversion
(`datetime.fromisoformat` of the upper-cased RFC 3339 text, as the wire does).
Anything unexpected -- a missing field, a value of another type, text the fast
path cannot read -- goes through the full wire validation instead, which gives
the same event or the same error as on the way in. Ten times cheaper than
validating again, and the projector reads every event of every case it derives.
"""

from __future__ import annotations

import json
from dataclasses import fields
from datetime import datetime
from typing import Any, Final

from casework.events import EVENT_TYPES, CaseEvent
from casework.wire import parse_event

__all__ = ["stored_event"]

#: The CaseEvent fields a body may hold; the rest of a body goes to `extra`.
_KNOWN: Final = frozenset(f.name for f in fields(CaseEvent) if f.init and f.name != "extra")
_TEXT: Final = ("event_id", "case_id", "department", "item")
_OPTIONAL_INT: Final = ("seq", "promised_days", "legal_days", "days", "step_days")
_OPTIONAL_TEXT: Final = ("reason", "step", "handler", "result")


def _fast(obj: dict[str, Any]) -> CaseEvent | None:
    """The event when every field has the type validation gave it; None otherwise."""
    for name in _TEXT:
        if type(obj.get(name)) is not str:
            return None
    if obj.get("type") not in EVENT_TYPES:
        return None
    for name in _OPTIONAL_INT:
        value = obj.get(name)
        if value is not None and type(value) is not int:
            return None
    for name in _OPTIONAL_TEXT:
        value = obj.get(name)
        if value is not None and type(value) is not str:
            return None
    at = obj.get("at")
    if type(at) is not str:
        return None
    try:
        instant = datetime.fromisoformat(at.upper())
    except ValueError:
        return None
    if instant.utcoffset() is None:
        return None
    known = {k: v for k, v in obj.items() if k in _KNOWN}
    known["at"] = instant
    extra = {k: v for k, v in obj.items() if k not in _KNOWN}
    return CaseEvent(**known, extra=extra)


def stored_event(body: str, source: str = "") -> CaseEvent:
    """The event a stored `body` holds; `source` labels an error (see `parse_event`)."""
    obj = json.loads(body)
    if isinstance(obj, dict):
        event = _fast(obj)
        if event is not None:
            return event
    return parse_event(obj, source=source)
