"""`AlertmanagerNotifier`: every active per-case alert posted to Alertmanager's API v2.

    AlertmanagerNotifier(engine, state, base_url, links, interval=..., client=..., now=...)
    notifier() -> how many alerts were posted (firing and resolved)

Each run posts every active alert (`active_alerts`) with ``endsAt`` three
intervals ahead, so Alertmanager keeps it firing as long as runs keep coming
and lets it expire by itself if the servers stop. Alerts that ended since the
previous run (case closed, card voided; `ended_since`) are posted with
``endsAt`` now, which resolves them. The instant of the previous successful run
is kept in `server_state` under `WATERMARK_KEY`; a failed post leaves it where
it was, so the next run resolves those alerts again. Runs look back one
interval before it, for transactions that committed late.

Alertmanager's errors: a 4xx answer is a permanent problem with what was sent
(raised as `AlertDeliveryError`, logged by the job); a transport error or a 5xx
is transient, and the next run posts everything again anyway.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import httpx
from sqlalchemy import Engine

from casework.errors import EsupError
from server.alerts.active import CaseAlert, Links, active_alerts, ended_since
from server.store.state import StateStore

__all__ = ["POST_CHUNK", "WATERMARK_KEY", "AlertDeliveryError", "AlertmanagerNotifier", "payload"]

logger = logging.getLogger(__name__)

#: The `server_state` key of the instant the previous run started.
WATERMARK_KEY: Final = "alerts.alertmanager.since"
#: Alerts per POST.
POST_CHUNK: Final = 1000


class AlertDeliveryError(EsupError, RuntimeError):
    """An alert receiver refused or could not take what was sent."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def payload(alert: CaseAlert, ends_at: datetime) -> dict[str, Any]:
    """The API v2 `postableAlert` of `alert`, ending at `ends_at`."""
    return {
        "labels": alert.labels(),
        "annotations": alert.annotations(),
        "startsAt": _stamp(alert.reached_at),
        "endsAt": _stamp(max(ends_at, alert.reached_at)),
        "generatorURL": alert.link,
    }


class AlertmanagerNotifier:
    """One run per call: post the active alerts and resolve the ended ones."""

    def __init__(
        self,
        engine: Engine,
        base_url: str,
        links: Links,
        *,
        interval: timedelta,
        client: httpx.Client | None = None,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.engine = engine
        self.url = base_url.rstrip("/") + "/api/v2/alerts"
        self.links = links
        self.interval = interval
        self.client = httpx.Client(timeout=10) if client is None else client
        self.now = now
        self.state = StateStore(engine, now=now)

    def _post(self, alerts: Sequence[dict[str, Any]]) -> None:
        for start in range(0, len(alerts), POST_CHUNK):
            chunk = list(alerts[start : start + POST_CHUNK])
            try:
                answer = self.client.post(self.url, json=chunk)
            except httpx.TransportError as exc:
                raise AlertDeliveryError(
                    f"Alertmanager at {self.url} could not be reached ({exc}); "
                    "the next run posts the alerts again."
                ) from exc
            if answer.status_code >= 300:
                raise AlertDeliveryError(
                    f"Alertmanager at {self.url} answered {answer.status_code}: "
                    f"{answer.text[:300]!r}"
                )

    def __call__(self) -> int:
        started = self.now()
        kept = self.state.get(WATERMARK_KEY)
        active = active_alerts(self.engine, self.links)
        live = {alert.key for alert in active}
        ended: list[CaseAlert] = []
        if kept is not None:  # on the first run nothing was posted before: nothing to resolve
            since = datetime.fromisoformat(kept) - self.interval
            ended = [a for a in ended_since(self.engine, self.links, since) if a.key not in live]
        ends = started + 3 * self.interval
        body = [payload(a, ends) for a in active] + [payload(a, started) for a in ended]
        self._post(body)
        self.state.put(WATERMARK_KEY, started.isoformat())
        logger.debug("alertmanager: %d firing, %d resolved", len(active), len(ended))
        return len(body)
