"""Sources: where the agent reads case events from.

    Source               what the runner drives and the metrics read (protocol)
    dropfolder.DropFolder   JSON Lines (or CSV) files written into a folder
    exchangedb.ExchangeDb   rows polled from an exchange database (前置库)

A source reads, validates and puts good events into the outbox in the same
transaction that records how far it has read, so a crash neither loses nor
doubles an event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

__all__ = ["Source"]


class Source(Protocol):
    """One source of events, driven by the runner from its own thread.

    `poll` reads what is there now (bounded work) and answers True when more is
    waiting at once; `interval` is how long to sleep otherwise. `start` may
    begin notifications that call `wake`; `close` ends them and releases what
    the source holds. The counters are read at scrape time: `last_event_at`
    (unix seconds of the last good event read), `events_read`,
    `events_rejected`.
    """

    name: str
    last_event_at: float | None
    events_read: int
    events_rejected: int

    @property
    def interval(self) -> float: ...

    def start(self, wake: Callable[[], None]) -> None: ...

    def poll(self) -> bool: ...

    def close(self) -> None: ...
