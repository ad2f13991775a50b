"""Per-case alerts with fakes: the webhook's digest and quiet hours, Alertmanager's failures.

The real Alertmanager is in test_alertmanager.py. Here the receivers are
`httpx.MockTransport` handlers and time is a clock the test moves.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi.testclient import TestClient
from observed import AGENT, DEPARTMENTS, seed
from sqlalchemy import Engine

from casework.calendar import WorkCalendar
from casework.clock import Clock
from casework.config import Deployment
from casework.configfiles import load_config
from server.alerts import (
    AlertDeliveryError,
    AlertmanagerNotifier,
    Links,
    WebhookNotifier,
    alert_jobs,
    working_time,
)
from server.alerts.alertmanager import WATERMARK_KEY
from server.app import create_app
from server.cases import CaseProjector
from server.settings import AlertSettings, ServerSettings
from server.store.state import StateStore
from server.store.tokens import TokenStore

CONFIG = Path(__file__).resolve().parents[2] / "config"
TZ = ZoneInfo("Asia/Shanghai")
WEDNESDAY = datetime(2025, 6, 18, 10, 30, tzinfo=TZ)
LINKS = Links("https://esup.example/")


@cache
def deployment() -> Deployment:
    return load_config(CONFIG)


@cache
def calendar() -> WorkCalendar:
    return WorkCalendar.from_config(deployment().calendar)


class Now:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


class Receiver:
    """A webhook or Alertmanager: keeps what it is sent, answers `status`."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.bodies: list[Any] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(json.loads(request.content))
        return httpx.Response(self.status)

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self))


class Store:
    """The observed cases at WEDNESDAY, and a way to post more as time moves on."""

    def __init__(self, engine: Engine, now: Now, client: TestClient, token: str) -> None:
        self.engine, self.now, self.client, self.token = engine, now, client, token

    def post(self, *events: dict[str, Any]) -> None:
        answer = self.client.post(
            "/api/v1/events", json=list(events), headers={"Authorization": f"Bearer {self.token}"}
        )
        assert answer.json()["accepted"] == len(events), answer.text

    def red_case(self, department: str, case_id: str) -> None:
        item = {"fgw": "fgw-002", "jyj": "jyj-003"}[department]
        at = self.now.at - timedelta(days=30)
        self.post(
            {
                "event_id": f"{case_id}-1",
                "case_id": case_id,
                "department": department,
                "item": item,
                "type": "accepted",
                "at": at.isoformat(),
                "promised_days": 1,
                "legal_days": 2,
            }
        )

    def close(self, department: str, case_id: str, item: str) -> None:
        self.post(
            {
                "event_id": f"{case_id}-close",
                "case_id": case_id,
                "department": department,
                "item": item,
                "type": "completed",
                "at": self.now.at.isoformat(),
                "result": "approved",
            }
        )


@pytest.fixture
def store(migrated: Engine) -> Iterator[Store]:
    now = Now(WEDNESDAY)
    d = deployment()
    projector = CaseProjector(migrated, Clock.for_deployment(d), d, now=now)
    app = create_app(
        ServerSettings(), engine=migrated, deployment=d, now=now, on_accepted=projector.refresh
    )
    token = TokenStore(migrated, now=now).create(AGENT, DEPARTMENTS)
    with TestClient(app) as client:
        seed(client, token, now.at)
        now.at += timedelta(seconds=1)
        yield Store(migrated, now, client, token)


def webhook(store: Store, receiver: Receiver, *, digest: bool = True) -> WebhookNotifier:
    return WebhookNotifier(
        store.engine,
        "https://chat.example/hook",
        LINKS,
        calendar=calendar(),
        zone=TZ,
        digest=digest,
        client=receiver.client(),
        now=store.now,
    )


def _told(bodies: list[Any], status: str) -> list[tuple[str, str]]:
    return sorted((a["labels"]["case_id"], a["labels"]["level"]) for b in bodies for a in b[status])


def test_the_webhook_tells_new_cards_once_in_one_digest_per_department(store: Store) -> None:
    receiver = Receiver()
    notify = webhook(store, receiver)

    assert notify() == 0  # the first run: what is already there is not news
    store.now.at += timedelta(minutes=1)
    store.red_case("jyj", "R3")
    assert notify() == 0  # R3's cards are newer than the previous run's horizon
    store.now.at += timedelta(minutes=1)
    assert notify() == 1
    store.now.at += timedelta(minutes=1)
    assert notify() == 0  # told once

    (message,) = receiver.bodies
    assert message["department"] == "jyj"
    assert _told([message], "firing") == [("R3", "red"), ("R3", "yellow")]
    assert message["resolved"] == []
    red = next(a for a in message["firing"] if a["labels"]["level"] == "red")
    assert red["annotations"]["case_url"] == "https://esup.example/api/v1/cases/jyj/R3"


def test_quiet_hours_hold_everything_until_the_first_run_in_working_hours(store: Store) -> None:
    receiver = Receiver()
    notify = webhook(store, receiver)
    assert notify() == 0

    store.now.at = WEDNESDAY.replace(hour=20)  # evening: quiet
    store.red_case("fgw", "R4")
    store.close("fgw", "R1", "fgw-002")
    store.red_case("jyj", "R5")
    for minutes in (1, 2, 600):  # through the night
        store.now.at = WEDNESDAY.replace(hour=20) + timedelta(minutes=minutes)
        assert notify() == 0
    assert receiver.bodies == []

    store.now.at = datetime(2025, 6, 19, 9, 1, tzinfo=TZ)  # Thursday morning
    assert notify() == 2

    by_department = {m["department"]: m for m in receiver.bodies}
    assert _told([by_department["fgw"]], "firing") == [("R4", "red"), ("R4", "yellow")]
    assert _told([by_department["fgw"]], "resolved") == [("R1", "red"), ("R1", "yellow")]
    assert _told([by_department["jyj"]], "firing") == [("R5", "red"), ("R5", "yellow")]


def test_without_digest_each_alert_is_its_own_message(store: Store) -> None:
    receiver = Receiver()
    notify = webhook(store, receiver, digest=False)
    notify()
    store.red_case("fgw", "R6")
    store.now.at += timedelta(minutes=1)
    notify()
    store.now.at += timedelta(minutes=1)

    assert notify() == 2
    assert sorted((b["status"], b["labels"]["level"]) for b in receiver.bodies) == [
        ("firing", "red"),
        ("firing", "yellow"),
    ]


def test_a_failed_send_is_sent_again_by_the_next_run(store: Store) -> None:
    receiver = Receiver(status=503)
    notify = webhook(store, receiver)
    notify()
    store.red_case("fgw", "R7")
    store.now.at += timedelta(minutes=1)
    notify()
    store.now.at += timedelta(minutes=1)

    with pytest.raises(AlertDeliveryError, match="answered 503"):
        notify()
    receiver.status = 200
    store.now.at += timedelta(minutes=1)

    assert notify() == 1
    assert _told(receiver.bodies[-1:], "firing") == [("R7", "red"), ("R7", "yellow")]


def test_alertmanager_refusing_keeps_the_watermark(store: Store) -> None:
    receiver = Receiver(status=400)
    notifier = AlertmanagerNotifier(
        store.engine,
        "http://am.example:9093/",
        LINKS,
        interval=timedelta(seconds=60),
        client=receiver.client(),
        now=store.now,
    )

    with pytest.raises(AlertDeliveryError, match="answered 400"):
        notifier()

    assert StateStore(store.engine).get(WATERMARK_KEY) is None
    (posted,) = receiver.bodies
    assert {(a["labels"]["case_id"], a["labels"]["level"]) for a in posted} == {
        ("R1", "red"),
        ("R1", "yellow"),
        ("Y1", "yellow"),
        ("R2", "red"),
        ("R2", "yellow"),
    }
    assert all(a["endsAt"].endswith("Z") for a in posted)


def test_working_time_follows_the_calendar() -> None:
    hours = (
        WEDNESDAY.time().replace(hour=9, minute=0),
        WEDNESDAY.time().replace(hour=18, minute=0),
    )
    assert working_time(calendar(), TZ, hours, WEDNESDAY)
    assert not working_time(calendar(), TZ, hours, WEDNESDAY.replace(hour=18))
    assert not working_time(calendar(), TZ, hours, datetime(2025, 6, 21, 10, tzinfo=TZ))  # Sat
    assert not working_time(calendar(), TZ, hours, datetime(2025, 10, 1, 10, tzinfo=TZ))  # holiday
    assert working_time(calendar(), TZ, hours, datetime(2025, 9, 28, 10, tzinfo=TZ))  # make-up Sun


def test_jobs_are_made_only_for_the_receivers_named(migrated: Engine) -> None:
    none = alert_jobs(migrated, deployment(), ServerSettings())
    both = alert_jobs(
        migrated,
        deployment(),
        ServerSettings(
            alerts=AlertSettings(
                alertmanager_url="http://am.example:9093", webhook_url="https://chat.example/h"
            )
        ),
    )

    assert none == []
    assert [job.name for job in both] == ["alertmanager", "webhook"]
