"""Notices: drained from the state database to the webhook, retried when the failure is
transient, dropped (and said so) when it is not; a flag's notice survives a restart."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import httpx
import pytest
from clockfakes import Events, FakeClock, feed, make_clocks, opener

from agent import openstore
from agent.notify import Notifier, NotifySettings

URL = "http://127.0.0.1:9/notices"


def queue(path: Path, *departments: str) -> None:
    conn = opener(path)()
    openstore.create_tables(conn)
    for d in departments:
        openstore.add_notice(conn, d, json.dumps({"department": d, "level": "red"}), 0.0)
    conn.close()


def recording(
    *statuses: int, headers: dict[str, str] | None = None
) -> tuple[httpx.Client, list[dict[str, object]]]:
    """A client whose webhook answers `statuses` in turn (then 200), recording bodies."""
    seen: list[dict[str, object]] = []
    answers = list(statuses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        status = answers.pop(0) if answers else 200
        return httpx.Response(status, headers=headers or {}, text="no")

    return httpx.Client(transport=httpx.MockTransport(handler)), seen


def notifier(path: Path, client: httpx.Client, now: FakeClock, **settings: object) -> Notifier:
    config = NotifySettings.model_validate(
        {"webhook_url": URL, "contacts": {"fgw": "13800000000"}, **settings}
    )
    return Notifier(config, opener(path), client=client, now=now)


def test_a_notice_reaches_the_webhook_with_the_departments_contact(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    queue(path, "fgw", "jyj")
    client, seen = recording()
    sender = notifier(path, client, FakeClock("2024-03-04"), default_contact="office@city.example")
    assert sender.deliver_due() == 2
    assert [(s["department"], s["contact"]) for s in seen] == [
        ("fgw", "13800000000"),
        ("jyj", "office@city.example"),
    ]
    assert sender.pending() == 0
    assert sender.outcomes["sent"] == 2


def test_a_server_error_is_retried_with_backoff(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    queue(path, "fgw")
    client, seen = recording(503, 503)
    now = FakeClock("2024-03-04")
    sender = notifier(path, client, now, backoff_seconds=10)
    sender.deliver_due()
    assert sender.pending() == 1
    assert sender.next_due() == now() + 10
    now.t += 9
    assert sender.deliver_due() == 0  # not yet
    now.t += 1
    sender.deliver_due()
    assert sender.next_due() == now() + 20  # doubled
    now.t += 20
    sender.deliver_due()
    assert sender.pending() == 0
    assert len(seen) == 3
    assert sender.outcomes == {"sent": 1, "failed": 0, "retried": 2, "unsent": 0}


def test_429_waits_as_long_as_retry_after_says(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    queue(path, "fgw")
    client, _ = recording(429, headers={"Retry-After": "120"})
    now = FakeClock("2024-03-04")
    sender = notifier(path, client, now, backoff_seconds=1)
    sender.deliver_due()
    assert sender.next_due() == now() + 120


def test_a_network_error_is_retried(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    queue(path, "fgw")

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    now = FakeClock("2024-03-04")
    sender = notifier(path, httpx.Client(transport=httpx.MockTransport(refuse)), now)
    sender.deliver_due()
    assert sender.pending() == 1
    assert sender.outcomes["retried"] == 1


def test_a_refused_notice_is_dropped_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "state.db"
    queue(path, "fgw")
    client, _ = recording(400)
    sender = notifier(path, client, FakeClock("2024-03-04"))
    with caplog.at_level(logging.ERROR, logger="agent.notify"):
        sender.deliver_due()
    assert sender.pending() == 0
    assert sender.outcomes["failed"] == 1
    assert "400" in caplog.text


def test_a_notice_is_given_up_after_max_attempts(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    queue(path, "fgw")
    client, seen = recording(500, 500, 500, 500)
    now = FakeClock("2024-03-04")
    sender = notifier(path, client, now, max_attempts=3)
    for _ in range(5):
        sender.deliver_due()
        now.t += 3600
    assert len(seen) == 3
    assert sender.outcomes["failed"] == 1


def test_without_a_webhook_notices_are_only_logged(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    queue(path, "fgw")
    client, seen = recording()
    sender = Notifier(NotifySettings(), opener(path), client=client, now=FakeClock("2024-03-04"))
    sender.deliver_due()
    assert seen == []
    assert sender.pending() == 0
    assert sender.outcomes["unsent"] == 1


def test_a_flag_raised_before_a_crash_is_still_notified_after_it(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    now = FakeClock("2024-03-13 09:00")
    clocks = make_clocks(path, now)
    feed(clocks, path, Events()("accepted", "2024-03-04 10:00", case_id="2024-XK-7"))
    clocks.process_due()  # flags raised and the notice queued; then the agent dies
    client, seen = recording()
    notifier(path, client, now).deliver_due()  # the next run's notifier
    (body,) = seen
    assert body["case_id"] == "2024-XK-7"
    assert body["levels"] == ["warning", "yellow"]
    assert body["contact"] == "13800000000"
    assert "past its promised deadline" in str(body["summary"])


def test_the_notifier_thread_sends_what_the_clocks_queue(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    delivered = threading.Event()

    def handler(request: httpx.Request) -> httpx.Response:
        delivered.set()
        return httpx.Response(204)

    sender = Notifier(
        NotifySettings(webhook_url=URL),
        opener(path),
        client=httpx.Client(transport=httpx.MockTransport(handler)),
    )
    now = FakeClock("2024-03-13 09:00")
    clocks = make_clocks(path, now, sender)
    sender.start()
    assert sender.is_running()
    try:
        feed(clocks, path, Events()("accepted", "2024-03-04 10:00"))
        clocks.process_due()  # queues the notice and wakes the notifier
        assert delivered.wait(30), "the notifier thread did not send the notice"
    finally:
        sender.stop()
    assert sender.outcomes["sent"] == 1
