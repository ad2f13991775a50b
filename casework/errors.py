"""Errors raised by esup.

    EsupError                      base of everything esup raises on purpose
    ├── ConfigError (ValueError)   one problem in a configuration file
    │   └── ConfigErrors           several problems, all reported at once
    ├── EventError (ValueError)    a case event that breaks the wire format
    └── CalendarRangeError (ValueError)
                                   a date outside the calendar's supported window

Messages are whole sentences naming the file, key or line, the offending value
and, where there is a fixed set, the valid choices.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


class EsupError(Exception):
    """Base class of every error esup raises deliberately."""


def _choices_text(choices: Iterable[Any] | None) -> str:
    if not choices:
        return ""
    shown = ", ".join(repr(c) for c in choices)
    return f" Valid choices: {shown}."


class ConfigError(EsupError, ValueError):
    """One problem in one configuration file.

    `path` is the file, `key` the dotted key path inside it (``items[3].legal_days``),
    `value` the offending value and `choices` the valid ones where they are a fixed set.
    """

    def __init__(
        self,
        path: str,
        key: str,
        value: Any,
        problem: str,
        choices: Sequence[Any] | None = None,
    ) -> None:
        self.path = path
        self.key = key
        self.value = value
        self.problem = problem
        self.choices = tuple(choices) if choices else ()
        where = f"{path}: {key}" if key else path
        super().__init__(f"{where}: {problem} (got {value!r}).{_choices_text(self.choices)}")


class ConfigErrors(EsupError, ValueError):  # noqa: N818 (a collection of ConfigError)
    """Every problem found in a configuration directory, in file order."""

    def __init__(self, errors: Sequence[ConfigError]) -> None:
        self.errors = tuple(errors)
        lines = "\n".join(f"  - {e}" for e in self.errors)
        super().__init__(f"{len(self.errors)} configuration problem(s):\n{lines}")


class EventError(EsupError, ValueError):
    """A case event that breaks a rule of the wire format.

    `source` names where it came from (a file, ``<stdin>``, a batch), `line` is
    1-based where the event came from a line of text, `field` the offending
    field (empty when the whole line is unreadable).
    """

    def __init__(
        self,
        problem: str,
        *,
        field: str = "",
        value: Any = None,
        source: str = "",
        line: int | None = None,
        choices: Sequence[Any] | None = None,
    ) -> None:
        self.problem = problem
        self.field = field
        self.value = value
        self.source = source
        self.line = line
        self.choices = tuple(choices) if choices else ()
        where = source or "event"
        if line is not None:
            where += f", line {line}"
        what = f"field {field!r}: " if field else ""
        shown = "" if value is None else f" (got {value!r})"
        super().__init__(f"{where}: {what}{problem}{shown}.{_choices_text(self.choices)}")

    @property
    def reason(self) -> str:
        """The short reason without the location, as the server reports it per event."""
        what = f"{self.field}: " if self.field else ""
        shown = "" if self.value is None else f" (got {self.value!r})"
        return f"{what}{self.problem}{shown}"


class CalendarRangeError(EsupError, ValueError):
    """A date outside the window the working-day calendar was built for."""

    def __init__(self, day: Any, first: Any, last: Any) -> None:
        self.day = day
        super().__init__(
            f"{day} is outside the working-day calendar's window {first} .. {last}; "
            "widen window (first_year, last_year) in calendar.yaml."
        )
