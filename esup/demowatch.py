"""Watching the demo's server catch up: events stored, events quarantined, cases projected.

    Watcher(url, first, end).start(); watcher.latest -> Progress counts; watcher.stop()
    wait_settled(client, expected, ...) -> the last city-wide figures, once nothing moves

The server answers a batch before it has necessarily projected its cases, so
the demo never takes an answered batch for a projected one. It reads the
events stored and quarantined from ``/metrics`` (`esup_ingest_events_total`)
and the cases projected from ``GET /api/v1/rates`` over the whole simulated
span (received + invalid: every case the projector has a row for), and
calls the store settled when the stored events are the simulator's expected
count, no case waits in the projection queue (``GET /api/v1/projection``)
and two reads of the year's rates a little apart are equal.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from datetime import date
from typing import Any, Final

import httpx

__all__ = ["Counts", "Watcher", "read_counts", "wait_settled"]

_INGEST: Final = re.compile(r'^esup_ingest_events_total\{outcome="(\w+)"\} ([0-9.e+]+)$', re.M)


@dataclass(frozen=True, slots=True)
class Counts:
    """What the server holds now: events stored, events quarantined, cases projected."""

    stored: int = 0
    quarantined: int = 0
    projected: int = 0


def read_counts(client: httpx.Client, first: date, end: date) -> Counts:
    """Read `Counts` from the server's /metrics and /api/v1/rates over [first, end)."""
    text = client.get("/metrics").text
    outcomes = {name: int(float(value)) for name, value in _INGEST.findall(text)}
    rates = client.get(
        "/api/v1/rates", params={"start": first.isoformat(), "end": end.isoformat()}
    ).json()
    return Counts(
        stored=outcomes.get("accepted", 0),
        quarantined=outcomes.get("rejected", 0),
        projected=int(rates["received"]) + int(rates["invalid"]),
    )


class Watcher:
    """Polls `read_counts` in a thread every `interval` s; `latest` is the last read."""

    def __init__(self, url: str, first: date, end: date, interval: float = 0.5) -> None:
        self.latest = Counts()
        self.error: str | None = None
        self._url, self._first, self._end, self._interval = url, first, end, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-watch", daemon=True)

    def start(self) -> Watcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        with httpx.Client(base_url=self._url, timeout=30) as client:
            while not self._stop.is_set():
                try:
                    self.latest = read_counts(client, self._first, self._end)
                    self.error = None
                except (httpx.HTTPError, KeyError, ValueError) as exc:
                    self.error = str(exc)
                self._stop.wait(self._interval)


def wait_settled(
    client: httpx.Client,
    watcher: Watcher,
    expected: Counts,
    year: tuple[date, date],
    *,
    timeout: float,
    alive: Any = None,
) -> dict[str, Any]:
    """Wait until the watcher sees `expected.stored` events stored and
    `expected.quarantined` quarantined and the server says no case waits for its
    projection (``GET /api/v1/projection``), then until two reads of the year's
    city-wide rates, a second apart, are equal; return that read. Raises TimeoutError
    naming what was still missing. `alive()`, when given, is called each round (it
    raises if a process died)."""
    deadline = time.monotonic() + timeout
    params = {"start": year[0].isoformat(), "end": year[1].isoformat()}
    last: dict[str, Any] | None = None
    while True:
        if alive is not None:
            alive()
        now = watcher.latest
        pending = int(client.get("/api/v1/projection").json()["pending"])
        stored = now.stored >= expected.stored and now.quarantined >= expected.quarantined
        if stored and pending == 0:
            rates: dict[str, Any] = client.get("/api/v1/rates", params=params).json()
            if rates == last and now.projected >= expected.projected:
                return rates
            last = rates
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"after {timeout:.0f} s the server holds {now.stored:,} of {expected.stored:,} "
                f"events, {now.quarantined} of {expected.quarantined} quarantined, "
                f"{now.projected:,} of {expected.projected:,} cases projected, "
                f"{pending:,} waiting for projection"
            )
        time.sleep(1.0)
