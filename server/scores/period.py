"""`Period`: what is scored, a year ("2025") or a month ("2025-03"), in local dates.

Period.parse("2025-03") -> Period      PeriodTextError for anything else
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from casework.errors import EsupError

__all__ = ["Period", "PeriodTextError"]

_TEXT = re.compile(r"^(\d{4})(?:-(\d{2}))?$")


class PeriodTextError(EsupError, ValueError):
    """A period that is neither a year YYYY nor a month YYYY-MM."""

    def __init__(self, text: str) -> None:
        self.text = text
        super().__init__(
            f"The period {text!r} is neither a year nor a month; write 2025 or 2025-03."
        )


@dataclass(frozen=True, slots=True, order=True)
class Period:
    """A year (`month` None) or one month of it; dates are local, `end` exclusive."""

    year: int
    month: int | None = None

    @classmethod
    def parse(cls, text: str) -> Period:
        match = _TEXT.match(text.strip())
        if not match:
            raise PeriodTextError(text)
        year, month = int(match[1]), int(match[2]) if match[2] else None
        if not 1900 <= year <= 2200 or (month is not None and not 1 <= month <= 12):
            raise PeriodTextError(text)
        return cls(year, month)

    def __str__(self) -> str:
        return str(self.year) if self.month is None else f"{self.year}-{self.month:02d}"

    @property
    def is_year(self) -> bool:
        return self.month is None

    @property
    def start(self) -> date:
        return date(self.year, self.month or 1, 1)

    @property
    def end(self) -> date:
        if self.month is None or self.month == 12:
            return date(self.year + 1, 1, 1)
        return date(self.year, self.month + 1, 1)

    def months(self) -> tuple[str, ...]:
        """The months it covers, as YYYY-MM."""
        if self.month is not None:
            return (str(self),)
        return tuple(f"{self.year}-{m:02d}" for m in range(1, 13))

    def year_period(self) -> Period:
        return Period(self.year)

    def previous_year(self) -> Period:
        """The same period a year earlier (the accountability rules compare with it)."""
        return Period(self.year - 1, self.month)

    def contains(self, day: date) -> bool:
        return self.start <= day < self.end
