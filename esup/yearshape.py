"""The size of a simulated year, and the reference city's.

YearShape(received, carried_over, completed)   exact counts for the year
YearShape.scaled(x)                            the reference year times x
REFERENCE_SHAPE                                22,746 / 6,630 / 28,260 (96.2%)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from typing import Final

from casework.errors import EsupError

__all__ = ["HORIZON", "REFERENCE_SHAPE", "REFERENCE_YEAR", "SimulationError", "YearShape"]

#: The reference year: fully inside the calendar data the `chinese-calendar` package holds.
REFERENCE_YEAR: Final = 2025
#: No event is stamped on or after this local date (the server rejects events from its future).
HORIZON: Final = date(2026, 11, 30)


class SimulationError(EsupError, ValueError):
    """A simulation that cannot be made as asked (a bad shape, scale or deployment)."""


@dataclass(frozen=True, slots=True)
class YearShape:
    """How many cases a simulated year holds, by esup's definitions for that year.

    received      valid cases accepted in the year
    carried_over  valid cases accepted before it and still open at its start
    completed     of those, closed (completed or withdrawn) within the year
    """

    received: int
    carried_over: int
    completed: int

    def __post_init__(self) -> None:
        for name in ("received", "carried_over", "completed"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise SimulationError(
                    f"YearShape.{name} must be a whole number >= 0, not {value!r}"
                )
        if self.completed > self.received + self.carried_over:
            raise SimulationError(
                f"YearShape.completed {self.completed} is more than the cases there are to "
                f"complete (received {self.received} + carried_over {self.carried_over})"
            )

    @property
    def open_at_end(self) -> int:
        """Cases still open when the year ends."""
        return self.received + self.carried_over - self.completed

    @property
    def completion_rate(self) -> float | None:
        total = self.received + self.carried_over
        return self.completed / total if total else None

    @classmethod
    def scaled(cls, scale: float) -> YearShape:
        """The reference year times `scale`: received, carried_over and the cases open at the
        year's end each rounded (half to even), completed the rest, so the completion rate
        stays that of the reference year, within rounding.

        ``scaled(1)`` is `REFERENCE_SHAPE`; ``scaled(0.1)`` is 2,275 / 663 / 2,826.
        """
        if not (isinstance(scale, int | float) and math.isfinite(scale) and 0 < scale <= 10):
            raise SimulationError(f"scale must be a number in (0, 10], not {scale!r}")
        ref = REFERENCE_SHAPE
        received = round(ref.received * scale)
        carried = round(ref.carried_over * scale)
        staying = min(round(ref.open_at_end * scale), received + carried)
        return cls(received, carried, received + carried - staying)


#: The reference city's year (docs/design.md, "Figures"): 28,260 / (22,746 + 6,630) = 96.2%.
REFERENCE_SHAPE: Final = YearShape(received=22_746, carried_over=6_630, completed=28_260)
