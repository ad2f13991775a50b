"""Reading many events at once: a JSON Lines file, an ingest body.

    iter_json_lines(lines)     a JSON Lines file -> (line number, CaseEvent | EventError)
    parse_batch(body, ctype)   an ingest body (JSON array or JSON Lines) -> [CaseEvent | EventError]
    json_lines_of(body, ctype) the body when parse_batch reads it as JSON Lines, else None

Each event is read by `casework.wire` (`parse_event`, `parse_json_line`), so
the rules and the error messages are the wire format's; a bad event is an
`EventError` in its place and the others go on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any, Final

from pydantic_core import from_json

from casework.errors import EventError
from casework.events import CaseEvent
from casework.wire import parse_event, parse_json_line

__all__ = ["NDJSON_MEDIA_TYPES", "iter_json_lines", "json_lines_of", "parse_batch"]

#: Content types under which `parse_batch` reads a body as JSON Lines whatever it starts with.
NDJSON_MEDIA_TYPES: Final[frozenset[str]] = frozenset(
    {"application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines"}
)

_FIRST_BYTE: Final = re.compile(rb"[^ \t\r\n]")
_BOM: Final = "\ufeff"
_BOM_BYTES: Final = b"\xef\xbb\xbf"


def iter_json_lines(
    lines: Iterable[str], *, source: str
) -> Iterator[tuple[int, CaseEvent | EventError]]:
    """Read JSON Lines: yield (1-based line number, event or the error for that line).

    Blank lines are skipped but counted. A UTF-8 byte-order mark at the start
    of the first line is ignored. A bad line yields its `EventError` and the
    iteration goes on, so the good lines after it still come through.
    """
    for number, text in enumerate(lines, start=1):
        if number == 1 and text.startswith(_BOM):
            text = text[1:]
        if not text or text.isspace():
            continue
        try:
            yield number, parse_json_line(text, source=source, line=number)
        except EventError as exc:
            yield number, exc


def _media_type(content_type: str | None) -> str:
    if not content_type:
        return ""
    return content_type.partition(";")[0].strip().lower()


def _lines_of(body: bytes, source: str) -> list[CaseEvent | EventError]:
    results: list[CaseEvent | EventError] = []
    for number, chunk in enumerate(body.split(b"\n"), start=1):
        if not chunk or chunk.isspace():
            continue
        try:
            results.append(parse_json_line(chunk, source=source, line=number))
        except EventError as exc:
            results.append(exc)
    return results


def _items_of(values: list[Any], source: str) -> list[CaseEvent | EventError]:
    results: list[CaseEvent | EventError] = []
    for index, value in enumerate(values):
        try:
            results.append(parse_event(value, source=f"{source}[{index}]"))
        except EventError as exc:
            results.append(exc)
    return results


def json_lines_of(body: bytes, content_type: str | None) -> bytes | None:
    """`body` without a byte-order mark when `parse_batch` reads it as JSON Lines, each
    non-blank line (split at ``\\n``, numbered from 1) one event; None otherwise."""
    body = body.removeprefix(_BOM_BYTES)
    media = _media_type(content_type)
    if media in NDJSON_MEDIA_TYPES:
        return body
    first = _FIRST_BYTE.search(body)
    if first is None or body[first.start()] != ord("{") or media == "application/json":
        return None
    return body


def parse_batch(
    body: bytes, content_type: str | None, *, source: str = "batch"
) -> list[CaseEvent | EventError]:
    """Parse an ingest body into one result per event, in body order.

    The format is decided thus (gzip is the HTTP layer's business):

    - a JSON Lines content type (`NDJSON_MEDIA_TYPES`): JSON Lines;
    - otherwise a body whose first non-space byte is ``[``: a JSON array of
      event objects; errors are labelled ``batch[i]`` (0-based index);
    - otherwise ``{``: JSON Lines, errors labelled with 1-based line numbers;
      under ``application/json`` a body that is one (pretty-printed) JSON
      object is taken as that one event.

    A leading UTF-8 byte-order mark is ignored; blank lines are skipped; an
    empty body is an empty list. A bad event is an `EventError` in its place
    and does not stop the others. Raises `EventError` for the whole body
    when it is neither: an unreadable JSON array, or a body starting with
    anything but ``[`` or ``{``.
    """
    body = body.removeprefix(_BOM_BYTES)
    media = _media_type(content_type)
    if media in NDJSON_MEDIA_TYPES:
        return _lines_of(body, source)
    first = _FIRST_BYTE.search(body)
    if first is None:
        return []
    head = body[first.start() : first.start() + 1]
    if head == b"[":
        try:
            values = from_json(body)
        except ValueError as exc:
            raise EventError(f"body is not a readable JSON array: {exc}", source=source) from None
        # A complete JSON document that starts with "[" is an array.
        return _items_of(values, source)
    if head != b"{":
        shown = body[first.start() : first.start() + 20].decode("utf-8", "replace")
        raise EventError(
            "body is neither a JSON array of events nor JSON Lines with one event object"
            f" per line; it starts with {shown!r}",
            source=source,
        )
    if media == "application/json":
        try:
            whole = from_json(body)
        except ValueError:
            pass  # several objects: JSON Lines sent as application/json
        else:
            try:
                return [parse_event(whole, source=source)]
            except EventError as exc:
                return [exc]
    return _lines_of(body, source)
