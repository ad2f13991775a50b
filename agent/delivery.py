"""Delivery: batches from the outbox to the server's ``POST /api/v1/events``.

    Delivery(conn, outbox, client, config, clock=..., rng=...)
      step(flush=False) -> float    one batch (or nothing); seconds to wait before the next
      counts, last_success_at       read at scrape time
    make_client(server_config, token, transport=None) -> httpx.Client

A batch is the oldest waiting events, sent when `batch_size` are waiting or
the oldest has waited `batch_age_seconds` (at once when flushing on stop), as
gzip-compressed JSON Lines with the bearer token. What the answer does:

    2xx with one result per event   accepted and duplicate leave the outbox;
                                    rejected go to the dead letters with the reason
    413                             the batch is split in halves, each sent on its own
                                    (one event alone refused as too large: dead letter)
    401, 403                        the rows stay; logged as an error; backoff
    408, 429, 5xx, network error    the rows stay; backoff, or Retry-After when given
    any other 4xx                   the whole batch to the dead letters with the reason
    2xx without usable results      the rows stay; logged; backoff

Backoff is exponential from `backoff_seconds` to `max_backoff_seconds` with
jitter (each wait drawn from its upper half); a success resets it. Rows leave
the outbox only in the transaction that records the server's answer, so a
crash before it resends the batch and the server answers ``duplicate``.
"""

from __future__ import annotations

import email.utils
import functools
import gzip
import logging
import random
import sqlite3
import ssl
import time
from collections.abc import Callable, Sequence
from typing import Final

import httpx

from agent.config import DeliveryConfig, ServerConfig
from agent.outbox import Outbox, OutboxRow

__all__ = ["EVENTS_PATH", "Delivery", "make_client", "retry_after", "tls_context"]

logger = logging.getLogger(__name__)

EVENTS_PATH: Final = "/api/v1/events"
#: The longest Retry-After honoured; a longer one is cut to this.
MAX_RETRY_AFTER: Final = 3600.0
_TRANSIENT: Final = frozenset({408, 429})
_TOKEN_PROBLEM: Final = frozenset({401, 403})


@functools.cache
def tls_context(ca_file: str | None = None) -> ssl.SSLContext:
    """A verifying TLS context (the system's trust store, or `ca_file`), made once per
    process: each context holds its own copy of the CA certificates (about 0.9 MB),
    and the agent's HTTP clients (delivery, catalog, notices) can share one."""
    return ssl.create_default_context(cafile=ca_file)


def make_client(
    server: ServerConfig, token: str, transport: httpx.BaseTransport | None = None
) -> httpx.Client:
    """An httpx client for the server: base URL, bearer token, TLS verified (CA file option)."""
    verify: ssl.SSLContext | bool
    if not server.verify:
        verify = False
    else:
        verify = tls_context(None if server.ca_file is None else str(server.ca_file))
    return httpx.Client(
        base_url=server.url,
        headers={"Authorization": f"Bearer {token}"},
        verify=verify,
        timeout=server.timeout_seconds,
        transport=transport,
    )


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date); None if absent
    or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - now
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _reason(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("reason"), str):
        return f"HTTP {response.status_code}: {body['reason']}"
    text = response.text.strip().replace("\n", " ")[:300]
    return f"HTTP {response.status_code}: {text or response.reason_phrase}"


class Delivery:
    """Sends the outbox's rows on `conn` (this thread's state connection) through `client`."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        outbox: Outbox,
        client: httpx.Client,
        config: DeliveryConfig,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.conn = conn
        self.outbox = outbox
        self.client = client
        self.config = config
        self.clock = clock
        self.rng = rng or random.Random()
        self.counts: dict[str, int] = {
            "accepted": 0,
            "duplicate": 0,
            "rejected": 0,
            "failed_attempts": 0,
        }
        self.last_success_at: float | None = None
        #: True while the last attempt failed: the runner then waits out the backoff.
        self.retrying = False
        self._failures = 0

    def backoff(self) -> float:
        """The next wait after a failure: exponential, capped, with jitter."""
        ceiling = min(
            self.config.max_backoff_seconds,
            self.config.backoff_seconds * (2.0 ** min(self._failures, 60)),
        )
        self._failures += 1
        return ceiling * self.rng.uniform(0.5, 1.0)

    def step(self, *, flush: bool = False) -> float:
        """Send at most one batch; the seconds to wait before calling again (0: at once).

        With nothing to send, or a batch not yet full nor old enough, the wait
        is until it may be; `flush` sends whatever is waiting.
        """
        self.retrying = False
        rows = self.outbox.take(self.conn, self.config.batch_size)
        if not rows:
            return self.config.batch_age_seconds or 1.0
        if not flush and len(rows) < self.config.batch_size:
            age = self.clock() - rows[0].queued_at
            if age < self.config.batch_age_seconds:
                return self.config.batch_age_seconds - age
        return self._send(rows)

    def _fail(self, wait: float | None = None) -> float:
        self.counts["failed_attempts"] += 1
        self.retrying = True
        step = self.backoff()
        return step if wait is None else wait

    def _send(self, rows: Sequence[OutboxRow]) -> float:
        body = "".join(row.body + "\n" for row in rows).encode()
        try:
            response = self.client.post(
                EVENTS_PATH,
                content=gzip.compress(body, compresslevel=6, mtime=0),
                headers={
                    "Content-Type": "application/x-ndjson",
                    "Content-Encoding": "gzip",
                },
            )
        except httpx.TransportError as exc:
            wait = self._fail()
            logger.warning(
                "delivery: %d event(s) not sent (%s: %s); retrying in %.1f s",
                len(rows),
                type(exc).__name__,
                exc,
                wait,
            )
            return wait
        status = response.status_code
        if 200 <= status < 300:
            return self._settle(rows, response)
        if status == 413:
            return self._split(rows, response)
        if status in _TOKEN_PROBLEM:
            wait = self._fail()
            logger.error(
                "delivery: the server refused the agent's token (%s); %d event(s) kept in the"
                " outbox. Check server.token or server.token_file (esup-server token create);"
                " retrying in %.1f s",
                _reason(response),
                len(rows),
                wait,
            )
            return wait
        if status in _TRANSIENT or status >= 500:
            wait = self._fail(retry_after(response.headers.get("retry-after"), self.clock()))
            logger.warning(
                "delivery: %s for %d event(s); retrying in %.1f s",
                _reason(response),
                len(rows),
                wait,
            )
            return wait
        reason = _reason(response)
        logger.error(
            "delivery: the server refused a batch of %d event(s) (%s); they move to the dead"
            " letters: see `esup-agent dead-letters list`",
            len(rows),
            reason,
        )
        self.outbox.settle(self.conn, [], [(row, reason, status) for row in rows])
        self.counts["rejected"] += len(rows)
        self._failures = 0
        return 0.0

    def _split(self, rows: Sequence[OutboxRow], response: httpx.Response) -> float:
        if len(rows) == 1:
            reason = _reason(response)
            logger.error("delivery: event %r alone is too large (%s)", rows[0].event_id, reason)
            self.outbox.settle(self.conn, [], [(rows[0], reason, 413)])
            self.counts["rejected"] += 1
            return 0.0
        half = len(rows) // 2
        logger.warning("delivery: batch of %d too large; sending halves", len(rows))
        for part in (rows[:half], rows[half:]):
            wait = self._send(part)
            if wait > 0:
                return wait
        return 0.0

    def _settle(self, rows: Sequence[OutboxRow], response: httpx.Response) -> float:
        try:
            results = response.json()["results"]
            statuses = [(r["status"], r.get("reason")) for r in results]
            if len(statuses) != len(rows):
                raise ValueError(f"{len(statuses)} results for {len(rows)} events")
        except (ValueError, KeyError, TypeError) as exc:
            wait = self._fail()
            logger.error(
                "delivery: the server's answer has no usable per-event results (%s); %d"
                " event(s) kept, retrying in %.1f s",
                exc,
                len(rows),
                wait,
            )
            return wait
        done: list[OutboxRow] = []
        dead: list[tuple[OutboxRow, str, int]] = []
        for row, (status, reason) in zip(rows, statuses, strict=True):
            if status in ("accepted", "duplicate"):
                done.append(row)
                self.counts[status] += 1
            else:
                dead.append((row, str(reason or status), response.status_code))
        self.outbox.settle(self.conn, done, dead)
        if dead:
            self.counts["rejected"] += len(dead)
            logger.warning(
                "delivery: the server rejected %d of %d event(s), first %r: %s; see"
                " `esup-agent dead-letters list`",
                len(dead),
                len(rows),
                dead[0][0].event_id,
                dead[0][1],
            )
        self._failures = 0
        self.last_success_at = self.clock()
        return 0.0
