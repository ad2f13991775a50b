"""Building one case's events in tests: `Case("2018-10-15 10:00").suspend(...)...`."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from casework.calendar import WorkCalendar
from casework.clock import CaseClock, Clock, Limits
from casework.events import CaseEvent

TZ = ZoneInfo("Asia/Shanghai")


@cache
def package_calendar() -> WorkCalendar:
    return WorkCalendar.from_package()


def local(text: str) -> datetime:
    """'2018-10-15 10:00' or '2018-10-15' as an aware Asia/Shanghai instant."""
    fmt = "%Y-%m-%d %H:%M" if " " in text else "%Y-%m-%d"
    return datetime.strptime(text, fmt).replace(tzinfo=TZ)


class Case:
    """A case's events, added in the order a test tells its story."""

    def __init__(self, accepted: str, **fields: Any) -> None:
        self.events: list[CaseEvent] = []
        self._add("accepted", accepted, **fields)

    def _add(self, kind: str, at: str, **fields: Any) -> Case:
        self.events.append(
            CaseEvent(
                event_id=f"e{len(self.events) + 1}",
                case_id="2018-XK-0001",
                department="zrzy",
                item="zrzy-001",
                type=kind,  # type: ignore[arg-type]
                at=local(at),
                **fields,
            )
        )
        return self

    def suspend(self, at: str, days: int, reason: str = "hearing") -> Case:
        return self._add("suspended", at, days=days, reason=reason)

    def resume(self, at: str) -> Case:
        return self._add("resumed", at)

    def extend(self, at: str, days: int) -> Case:
        return self._add("extended", at, days=days)

    def complete(self, at: str) -> Case:
        return self._add("completed", at, result="approved")

    def withdraw(self, at: str) -> Case:
        return self._add("withdrawn", at)

    def at(
        self,
        when: str,
        limits: Limits,
        clock: Clock | None = None,
    ) -> CaseClock:
        return (clock or Clock(package_calendar())).evaluate(self.events, limits, local(when))
