"""Notices to a department's contact, through a configured local webhook.

When a live clock raises a flag (agent.liveclocks), the notice is written to
the ``clock_notices`` table in the same transaction as the flag, so that a
crash between the two can lose neither. `Notifier` drains that table: it POSTs
each notice as JSON to `NotifySettings.webhook_url` (a local relay -- an SMS or
mail gateway, a chat bot, the department's own system), naming the
department's contact from `NotifySettings.contacts`.

Transient failures (network errors, 5xx, 429) are retried with exponential
backoff, honouring ``Retry-After``; every retry is logged. Any other answer
is permanent: the notice is dropped with an error log line and counted as
failed, and so is a notice that failed `max_attempts` times.

The body posted (format ``esup.notice/1``)::

    {"format": "esup.notice/1", "department": "fgw", "contact": "fgw@city.example",
     "case_id": "2024-XK-0001", "item": "fgw-001", "level": "yellow",
     "levels": ["warning", "yellow"], "reached_at": "2024-03-09T00:00:00+08:00",
     "raised_at": "2024-03-09T00:00:01+08:00", "summary": "..."}
"""

from __future__ import annotations

import email.utils
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Annotated, Final

import httpx
from pydantic import BaseModel, ConfigDict, Field

from agent import openstore
from agent.wakeloop import WakeLoop

__all__ = ["NOTICE_FORMAT", "Notifier", "NotifySettings"]

log = logging.getLogger(__name__)

NOTICE_FORMAT: Final = "esup.notice/1"


class NotifySettings(BaseModel):
    """Where notices go. Without a `webhook_url` flags are logged and counted only."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    webhook_url: str | None = None
    #: Department code -> the contact (phone, mail address, chat id) the relay should reach.
    contacts: dict[str, str] = Field(default_factory=dict)
    #: Contact for a department not listed in `contacts`.
    default_contact: str | None = None
    timeout_seconds: Annotated[float, Field(gt=0)] = 10.0
    max_attempts: Annotated[int, Field(ge=1)] = 20
    backoff_seconds: Annotated[float, Field(gt=0)] = 5.0
    max_backoff_seconds: Annotated[float, Field(gt=0)] = 900.0

    def contact_of(self, department: str) -> str | None:
        return self.contacts.get(department, self.default_contact)


def _retry_after(response: httpx.Response, now: float) -> float | None:
    """Seconds the server asked us to wait (delta-seconds or an HTTP date), if it did."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


class Notifier:
    """Delivers the pending notices of the state database to the webhook.

    `connect` opens a connection to the state database (autocommit); `client`
    is the HTTP client (tests hand one with an `httpx.MockTransport`); `now`
    is the clock in POSIX seconds.
    """

    def __init__(
        self,
        settings: NotifySettings,
        connect: Callable[[], sqlite3.Connection],
        *,
        client: httpx.Client | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._connect = connect
        self._conn: sqlite3.Connection | None = None
        self._client = client
        self._now = now
        self._lock = threading.Lock()
        self._loop = WakeLoop("esup-notify", self._step, failure="Delivering notices failed")
        #: Outcomes since start: sent, failed (given up), retried, and unsent (no webhook
        #: configured: the flag was logged and counted, and that is all).
        self.outcomes: dict[str, int] = {"sent": 0, "failed": 0, "retried": 0, "unsent": 0}

    # -- the connection and the client, made on first use --------------------------------

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = self._connect()
            openstore.create_tables(self._conn)
        return self._conn

    def _http(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(timeout=self.settings.timeout_seconds)
        return self._client

    def pending(self) -> int:
        """Notices not yet delivered."""
        with self._lock:
            return openstore.pending_notices(self._db())

    # -- one pass -------------------------------------------------------------------------

    def _attempt(self, department: str, body: str, now: float) -> tuple[str, float | None]:
        """POST one notice: ("sent" | "retry" | "failed" | "unsent", seconds the server asked
        to wait)."""
        url = self.settings.webhook_url
        if url is None:
            return "unsent", None  # nowhere to send: the flag was logged and counted
        payload = json.loads(body)
        payload["contact"] = self.settings.contact_of(department)
        try:
            response = self._http().post(url, json=payload)
        except httpx.TransportError as exc:
            log.warning("Notice for %s could not reach %s: %s; will retry.", department, url, exc)
            return "retry", None
        if response.is_success:
            return "sent", None
        if response.status_code >= 500 or response.status_code == 429:
            log.warning(
                "Notice webhook %s answered %s for %s; will retry.",
                url,
                response.status_code,
                department,
            )
            return "retry", _retry_after(response, now)
        log.error(
            "Notice webhook %s refused a notice for %s with %s: %s; it is dropped. "
            "Fix the webhook or its address in the agent's notify settings.",
            url,
            department,
            response.status_code,
            response.text[:200],
        )
        return "failed", None

    def deliver_due(self, limit: int = 100) -> int:
        """Try every notice due now (at most `limit`); returns how many were tried."""
        with self._lock:
            conn = self._db()
            now = self._now()
            due = openstore.due_notices(conn, now, limit)
            done: list[int] = []
            for notice_id, department, body, attempts in due:
                outcome, wait = self._attempt(department, body, now)
                if outcome == "retry" and attempts + 1 >= self.settings.max_attempts:
                    log.error(
                        "Notice %s for %s failed %d times; giving up on it.",
                        notice_id,
                        department,
                        attempts + 1,
                    )
                    outcome = "failed"
                if outcome == "retry":
                    backoff = min(
                        self.settings.max_backoff_seconds,
                        self.settings.backoff_seconds * 2**attempts,
                    )
                    openstore.retry_notice(conn, notice_id, now + max(backoff, wait or 0.0))
                    self.outcomes["retried"] += 1
                else:
                    done.append(notice_id)
                    self.outcomes[outcome] += 1
            openstore.drop_notices(conn, done)
            return len(due)

    def next_due(self) -> float | None:
        with self._lock:
            return openstore.next_notice_at(self._db())

    # -- the thread -----------------------------------------------------------------------

    def wake(self) -> None:
        """New notices were committed: deliver them now."""
        self._loop.wake()

    def _step(self) -> float:
        while self.deliver_due() > 0:
            pass
        wake = self.next_due()
        return 300.0 if wake is None else min(300.0, max(0.0, wake - self._now()))

    def start(self) -> None:
        self._loop.start()

    def is_running(self) -> bool:
        """Whether the thread runs (for the agent's /healthz)."""
        return self._loop.is_running()

    def stop(self, timeout: float = 10.0) -> None:
        self._loop.stop(timeout)
