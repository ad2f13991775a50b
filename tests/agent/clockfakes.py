"""Fakes and builders for the live clocks' tests: a settable clock, a small
deployment, case events, and a state database in a temp dir."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from agent.liveclocks import LiveClocks, connect_state
from casework.clock import Clock
from casework.config import CalendarConfig, Department, Deployment, Item, Settings, SubItem
from casework.events import CaseEvent

TZ = ZoneInfo("Asia/Shanghai")


def local(text: str) -> datetime:
    """'2024-03-04 10:00' or '2024-03-04' as an aware Asia/Shanghai instant."""
    fmt = "%Y-%m-%d %H:%M" if " " in text else "%Y-%m-%d"
    return datetime.strptime(text, fmt).replace(tzinfo=TZ)


class FakeClock:
    """`now()` for tests: POSIX seconds, moved by hand."""

    def __init__(self, start: str) -> None:
        self.t = local(start).timestamp()

    def __call__(self) -> float:
        return self.t

    def set(self, text: str) -> None:
        self.t = local(text).timestamp()


@cache
def deployment() -> Deployment:
    """Two departments; fgw-001 promises 5 and allows 10 working days, warning at 2 left."""
    return Deployment(
        directory=Path("config"),
        settings=Settings(city="Testing"),
        departments=(
            Department(code="fgw", name="发改委", category="government", supervised=True),
            Department(code="jyj", name="教育局", category="government", supervised=True),
        ),
        items=(
            Item(
                code="fgw-001",
                name="项目核准",
                department="fgw",
                kind="approval",
                promised_days=5,
                legal_days=10,
                sub_items=(SubItem(code="fgw-001-01", name="子项", promised_days=3),),
            ),
            Item(
                code="jyj-001",
                name="办学许可",
                department="jyj",
                kind="approval",
                promised_days=20,
                legal_days=20,
            ),
        ),
        calendar=CalendarConfig(),
    )


@cache
def clock() -> Clock:
    return Clock.for_deployment(deployment())


class Events:
    """Events of many cases, numbered so that every event_id is new."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(
        self,
        kind: str,
        at: str,
        case_id: str = "C1",
        department: str = "fgw",
        item: str = "fgw-001",
        **fields: Any,
    ) -> CaseEvent:
        self.n += 1
        return CaseEvent(
            event_id=f"e{self.n}",
            case_id=case_id,
            department=department,
            item=item,
            type=kind,  # type: ignore[arg-type]
            at=local(at),
            **fields,
        )


class Wakes:
    """Counts `wake()` calls (what the clocks call on the notifier)."""

    def __init__(self) -> None:
        self.count = 0
        self.woken = threading.Event()

    def wake(self) -> None:
        self.count += 1
        self.woken.set()


def opener(path: Path) -> Callable[[], sqlite3.Connection]:
    return lambda: connect_state(path)


def core_connection(path: Path) -> sqlite3.Connection:
    """A connection as the core holds one: implicit transactions, committed by hand."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    return conn


def make_clocks(path: Path, now: FakeClock, wakes: Wakes | None = None) -> LiveClocks:
    return LiveClocks(deployment(), opener(path), clock=clock(), now=now, notices=wakes)


def feed(clocks: LiveClocks, path: Path, *events: CaseEvent) -> None:
    """Put a batch through the sink the way the core does: record, commit, committed."""
    conn = core_connection(path)
    try:
        clocks.record(conn, events)
        conn.commit()
    finally:
        conn.close()
    clocks.committed(events)
