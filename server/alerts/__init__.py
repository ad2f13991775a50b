"""Per-case alerts: every open case at yellow or red, told to Alertmanager or a webhook.

    active.py        which alerts are active or ended, derived from `cases` and `cards`
    alertmanager.py  `AlertmanagerNotifier`: POST /api/v2/alerts, re-posted, resolved
    webhook.py       `WebhookNotifier`: plain JSON, digest per department, quiet hours
    alert_jobs(engine, deployment, settings) -> the scheduled jobs the settings ask for

Each notifier runs as a `server.jobs.AdvanceJob` under a PostgreSQL advisory
lock of its own, so several servers on one database send once per interval
between them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import httpx
from sqlalchemy import Engine

from casework.calendar import WorkCalendar
from casework.config import Deployment
from server.alerts.active import ALERTNAME, CaseAlert, Links, active_alerts, ended_since
from server.alerts.alertmanager import AlertDeliveryError, AlertmanagerNotifier
from server.alerts.webhook import WebhookNotifier, working_time
from server.jobs import MAX_HOLD, AdvanceJob, advisory_lock
from server.settings import ServerSettings

__all__ = [
    "ALERTMANAGER_LOCK_KEY",
    "ALERTNAME",
    "WEBHOOK_LOCK_KEY",
    "AlertDeliveryError",
    "AlertmanagerNotifier",
    "CaseAlert",
    "Links",
    "WebhookNotifier",
    "active_alerts",
    "alert_jobs",
    "ended_since",
    "working_time",
]

#: Advisory lock keys, fixed forever like the advancing job's: "esupalm1", "esupwhk1".
ALERTMANAGER_LOCK_KEY: Final = int.from_bytes(b"esupalm1", "big", signed=True)
WEBHOOK_LOCK_KEY: Final = int.from_bytes(b"esupwhk1", "big", signed=True)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _job(
    engine: Engine,
    run: Callable[[], int],
    interval: timedelta,
    key: int,
    name: str,
    now: Callable[[], datetime],
) -> AdvanceJob:
    if engine.dialect.name == "postgresql":
        hold = min(interval / 2, MAX_HOLD)
        lock = advisory_lock(engine, key)
        return AdvanceJob(run, interval=interval, lock=lock, hold=hold, now=now, name=name)
    return AdvanceJob(run, interval=interval, now=now, name=name)


def alert_jobs(
    engine: Engine,
    deployment: Deployment,
    settings: ServerSettings,
    *,
    client: httpx.Client | None = None,
    now: Callable[[], datetime] = _utcnow,
    listen: Callable[[Callable[[Any, Any], None]], None] | None = None,
) -> list[AdvanceJob]:
    """The alert jobs `settings.alerts` asks for (none when it names no receiver).

    `listen` (a `LiveConfig`'s) lets the webhook's quiet hours follow a reloaded
    calendar and zone.
    """
    alerts = settings.alerts
    interval = timedelta(seconds=alerts.interval_seconds)
    links = Links(alerts.external_url)
    jobs: list[AdvanceJob] = []
    if alerts.alertmanager_url:
        notifier = AlertmanagerNotifier(
            engine, alerts.alertmanager_url, links, interval=interval, client=client, now=now
        )
        jobs.append(_job(engine, notifier, interval, ALERTMANAGER_LOCK_KEY, "alertmanager", now))
    if alerts.webhook_url:
        webhook = WebhookNotifier(
            engine,
            alerts.webhook_url,
            links,
            calendar=WorkCalendar.from_config(deployment.calendar),
            zone=deployment.settings.zone,
            working_hours=(settings.working_hours.start, settings.working_hours.end),
            digest=alerts.webhook_digest,
            quiet_hours=alerts.quiet_hours,
            client=client,
            now=now,
        )
        if listen is not None:
            listen(
                lambda _old, new: webhook.reconfigure(
                    new.clock.calendar, new.deployment.settings.zone
                )
            )
        jobs.append(_job(engine, webhook, interval, WEBHOOK_LOCK_KEY, "webhook", now))
    return jobs
