"""Local dates and midnights in the deployment's time zone, for the clock's hot path."""

from __future__ import annotations

from array import array
from collections.abc import Callable
from datetime import date, datetime, tzinfo
from typing import Final

from casework.calendar import WorkCalendar

EPOCH_ORDINAL: Final[int] = date(1970, 1, 1).toordinal()
DAY_SECONDS: Final[int] = 86400


class LocalTime:
    """Local dates and midnights of one time zone, as plain functions for the hot path.

    A zone whose UTC offset never changes inside the calendar's window (such as
    Asia/Shanghai since 1991) gets pure arithmetic; any other goes through zoneinfo.
    """

    def __init__(self, tz: tzinfo, calendar: WorkCalendar) -> None:
        self.tz = tz
        offsets = {
            tz.utcoffset(datetime(y, m, 1))
            for y in range(calendar.first_day.year, calendar.last_day.year + 1)
            for m in (1, 4, 7, 10)
        }
        #: The zone's fixed UTC offset in seconds, or None when it changes (then use `day`).
        self.offset: int | None = None
        self.day: Callable[[float], int]
        self.midnight: Callable[[int], float]
        if len(offsets) == 1 and (offset := offsets.pop()) is not None:
            off = self.offset = int(offset.total_seconds())

            def day(ts: float) -> int:
                return int((ts + off) // DAY_SECONDS) + EPOCH_ORDINAL

            def midnight(ordinal: int) -> float:
                return float((ordinal - EPOCH_ORDINAL) * DAY_SECONDS - off)

            self.day, self.midnight = day, midnight
        else:
            self.day = lambda ts: datetime.fromtimestamp(ts, tz).date().toordinal()
            self.midnight = lambda ordinal: datetime.combine(
                date.fromordinal(ordinal), datetime.min.time(), tz
            ).timestamp()
        #: midnights[i]: the instant local day `base + i` begins, for every day of the
        #: calendar's window and the one after it (a deadline is the next midnight).
        self.base = calendar.base
        span = calendar.last_day.toordinal() - calendar.base + 2
        self.midnights = array("d", (self.midnight(self.base + i) for i in range(span)))

    def instant(self, ts: float) -> datetime:
        return datetime.fromtimestamp(ts, self.tz)
