"""`WebhookNotifier`: per-case alerts as plain JSON to a webhook, for places without Alertmanager.

    WebhookNotifier(engine, url, links, calendar=..., zone=..., working_hours=..., digest=True,
                    quiet_hours=True, client=..., now=...)
    notifier() -> how many messages were sent
    working_time(calendar, zone, working_hours, at) -> bool

Unlike Alertmanager, a webhook is told each change once: a new yellow or red
card (``firing``) and, for a case already told, its close or the card's void
(``resolved``). With `digest` every run sends one message per department
holding its changes; without, one message per alert. With `quiet_hours`
nothing is sent outside office hours of a working day: the changes wait and
the first run in working hours sends them all.

Nothing is lost and nothing is stored per alert: the run keeps in
`server_state` the highest card id already told and the instant up to which
closes and voids were told (`*_KEY`). A run tells the cards and ends up to
what the *previous* run saw as the newest (its horizon), so a card written by
a transaction still open at that moment is told by the next run, not skipped.
A failed send leaves the watermarks where they were; the next run sends again.
Message shapes are in docs/operations.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, time, tzinfo
from typing import Any, Final

import httpx
from sqlalchemy import Engine

from casework.calendar import WorkCalendar
from server.alerts.active import (
    CaseAlert,
    Links,
    by_department,
    ended_since,
    highest_card_id,
    new_cards,
)
from server.alerts.alertmanager import AlertDeliveryError
from server.store.state import StateStore

__all__ = [
    "HORIZON_AT_KEY",
    "HORIZON_ID_KEY",
    "TOLD_AT_KEY",
    "TOLD_ID_KEY",
    "WebhookNotifier",
    "alert_json",
    "working_time",
]

logger = logging.getLogger(__name__)

TOLD_ID_KEY: Final = "alerts.webhook.told_card_id"
TOLD_AT_KEY: Final = "alerts.webhook.told_until"
HORIZON_ID_KEY: Final = "alerts.webhook.horizon_card_id"
HORIZON_AT_KEY: Final = "alerts.webhook.horizon_at"


def _utcnow() -> datetime:
    return datetime.now(UTC)


def working_time(
    calendar: WorkCalendar, zone: tzinfo, working_hours: tuple[time, time], at: datetime
) -> bool:
    """Whether `at` falls in office hours [start, end) of a working day, local time."""
    local = at.astimezone(zone)
    start, end = working_hours
    return start <= local.time().replace(tzinfo=None) < end and calendar.is_working_day(
        local.date()
    )


def alert_json(alert: CaseAlert, status: str) -> dict[str, Any]:
    """One alert as the webhook sends it: status, labels, annotations, when it started."""
    return {
        "status": status,
        "labels": alert.labels(),
        "annotations": alert.annotations(),
        "startsAt": alert.reached_at.astimezone(UTC).isoformat(),
    }


class WebhookNotifier:
    """One run per call: tell the webhook what changed since the last run told it."""

    def __init__(
        self,
        engine: Engine,
        url: str,
        links: Links,
        *,
        calendar: WorkCalendar,
        zone: tzinfo,
        working_hours: tuple[time, time] = (time(9), time(18)),
        digest: bool = True,
        quiet_hours: bool = True,
        client: httpx.Client | None = None,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.engine = engine
        self.url = url
        self.links = links
        self.calendar = calendar
        self.zone = zone
        self.working_hours = working_hours
        self.digest = digest
        self.quiet_hours = quiet_hours
        self.client = httpx.Client(timeout=10) if client is None else client
        self.now = now
        self.state = StateStore(engine, now=now)

    def reconfigure(self, calendar: WorkCalendar, zone: tzinfo) -> None:
        """Quiet hours by `calendar` and `zone` from the next run on (a reloaded config/)."""
        self.calendar, self.zone = calendar, zone

    def _horizon(self, started: datetime) -> None:
        self.state.put(HORIZON_ID_KEY, str(highest_card_id(self.engine)))
        self.state.put(HORIZON_AT_KEY, started.isoformat())

    def __call__(self) -> int:
        started = self.now()
        horizon_id = self.state.get(HORIZON_ID_KEY)
        horizon_at = self.state.get(HORIZON_AT_KEY)
        if horizon_id is None or horizon_at is None:
            # First run: what happened before this server sent alerts is not news.
            self.state.put(TOLD_ID_KEY, str(highest_card_id(self.engine)))
            self.state.put(TOLD_AT_KEY, started.isoformat())
            self._horizon(started)
            return 0
        if self.quiet_hours and not working_time(
            self.calendar, self.zone, self.working_hours, started
        ):
            self._horizon(started)  # held: the first run in working hours tells it all
            return 0
        told_id = int(self.state.get(TOLD_ID_KEY) or 0)
        told_at = datetime.fromisoformat(self.state.get(TOLD_AT_KEY) or horizon_at)
        upto_id, upto_at = int(horizon_id), datetime.fromisoformat(horizon_at)
        firing = new_cards(self.engine, self.links, told_id, upto_id)
        ended = [
            a
            for a in ended_since(self.engine, self.links, told_at, upto_at)
            if a.card_id <= told_id
        ]
        sent = self._send(firing, ended, upto_at)
        self.state.put(TOLD_ID_KEY, str(max(told_id, upto_id)))
        self.state.put(TOLD_AT_KEY, max(told_at, upto_at).isoformat())
        self._horizon(started)
        logger.info("webhook: %d firing, %d resolved, %d message(s)", len(firing), len(ended), sent)
        return sent

    def _send(self, firing: list[CaseAlert], ended: list[CaseAlert], until: datetime) -> int:
        messages: list[dict[str, Any]] = []
        if self.digest:
            fired, done = by_department(firing), by_department(ended)
            for department in sorted({*fired, *done}):
                messages.append(
                    {
                        "department": department,
                        "until": until.astimezone(UTC).isoformat(),
                        "firing": [alert_json(a, "firing") for a in fired.get(department, [])],
                        "resolved": [alert_json(a, "resolved") for a in done.get(department, [])],
                    }
                )
        else:
            messages += [alert_json(a, "firing") for a in firing]
            messages += [alert_json(a, "resolved") for a in ended]
        for message in messages:
            try:
                answer = self.client.post(self.url, json=message)
            except httpx.TransportError as exc:
                raise AlertDeliveryError(
                    f"The webhook at {self.url} could not be reached ({exc}); "
                    "the next run sends the same changes again."
                ) from exc
            if answer.status_code >= 300:
                raise AlertDeliveryError(
                    f"The webhook at {self.url} answered {answer.status_code}: "
                    f"{answer.text[:300]!r}; the next run sends the same changes again."
                )
        return len(messages)
