"""Delivery against a fake server (httpx.MockTransport): what each answer does to the rows."""

from __future__ import annotations

import gzip
import json
import random
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import pytest
from agenthelpers import FakeClock, agent_config, event

from agent.config import DeliveryConfig
from agent.delivery import Delivery, make_client, retry_after
from agent.outbox import Outbox
from agent.statedb import transaction
from casework.wire import parse_event

Handler = Callable[[httpx.Request], httpx.Response]


def fill(state: sqlite3.Connection, outbox: Outbox, count: int, start: int = 1) -> None:
    with transaction(state):
        queued = outbox.put(
            state, "drop", [parse_event(event(n)) for n in range(start, start + count)]
        )
    outbox.committed(queued)


def sent_events(request: httpx.Request) -> list[dict[str, Any]]:
    assert request.headers["content-encoding"] == "gzip"
    body = gzip.decompress(request.content).decode()
    return [json.loads(x) for x in body.splitlines()]


def answer(statuses: Sequence[str], reasons: dict[int, str] | None = None) -> httpx.Response:
    reasons = reasons or {}
    results = [
        {"index": i, "event_id": None, "status": s, "reason": reasons.get(i)}
        for i, s in enumerate(statuses)
    ]
    return httpx.Response(
        200,
        json={
            "results": results,
            "accepted": statuses.count("accepted"),
            "duplicate": statuses.count("duplicate"),
            "rejected": statuses.count("rejected"),
        },
    )


def accept_all(request: httpx.Request) -> httpx.Response:
    return answer(["accepted"] * len(sent_events(request)))


def delivery(
    tmp_path: Any,
    state: sqlite3.Connection,
    outbox: Outbox,
    clock: FakeClock,
    handler: Handler,
    **settings: Any,
) -> Delivery:
    config = agent_config(tmp_path)
    client = make_client(config.server, "secret", httpx.MockTransport(handler))
    return Delivery(
        state,
        outbox,
        client,
        DeliveryConfig.model_validate({"batch_size": 10, **settings}),
        clock=clock,
        rng=random.Random(7),
    )


def test_a_batch_is_gzip_json_lines_with_the_token_and_leaves_after_2xx(
    tmp_path: Any, state: sqlite3.Connection, outbox: Outbox, clock: FakeClock
) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return accept_all(request)

    sender = delivery(tmp_path, state, outbox, clock, handler)
    fill(state, outbox, 25)
    assert sender.step() == 0
    assert sender.step() == 0
    assert outbox.depth() == 5
    request = seen[0]
    assert request.url.path == "/api/v1/events"
    assert request.headers["authorization"] == "Bearer secret"
    assert request.headers["content-type"] == "application/x-ndjson"
    events = sent_events(request)
    assert [e["seq"] for e in events] == list(range(1, 11))
    assert {e["source"] for e in events} == {"drop"}
    assert sender.counts["accepted"] == 20
    assert sender.last_success_at == clock.now


def test_a_small_batch_waits_for_its_age_unless_flushing(
    tmp_path: Any, state: sqlite3.Connection, outbox: Outbox, clock: FakeClock
) -> None:
    sender = delivery(tmp_path, state, outbox, clock, accept_all, batch_age_seconds=2)
    fill(state, outbox, 3)
    clock.advance(0.5)
    assert sender.step() == pytest.approx(1.5)
    assert outbox.depth() == 3
    assert sender.step(flush=True) == 0
    assert outbox.depth() == 0


def test_server_down_then_up_keeps_every_row_and_backs_off(
    tmp_path: Any, state: sqlite3.Connection, outbox: Outbox, clock: FakeClock
) -> None:
    up = False

    def handler(request: httpx.Request) -> httpx.Response:
        if not up:
            raise httpx.ConnectError("connection refused", request=request)
        return accept_all(request)

    sender = delivery(tmp_path, state, outbox, clock, handler, batch_age_seconds=0)
    fill(state, outbox, 4)
    waits = [sender.step() for _ in range(6)]
    assert outbox.depth() == 4
    assert sender.retrying
    assert sender.counts["failed_attempts"] == 6
    ceilings = [0.5 * 2**n for n in range(6)]
    for wait, ceiling in zip(waits, ceilings, strict=True):
        assert ceiling / 2 <= wait <= ceiling  # exponential, jittered
    up = True
    assert sender.step() == 0
    assert outbox.depth() == 0
    assert not sender.retrying
    assert sender.backoff() <= 0.5  # a success resets the backoff


def test_500_is_retried_and_loses_nothing(
    tmp_path: Any, state: sqlite3.Connection, outbox: Outbox, clock: FakeClock
) -> None:
    answers = iter([httpx.Response(500, text="boom"), httpx.Response(503)])

    def handler(request: httpx.Request) -> httpx.Response:
        return next(answers, None) or accept_all(request)

    sender = delivery(tmp_path, state, outbox, clock, handler, batch_age_seconds=0)
    fill(state, outbox, 3)
    assert sender.step() > 0
    assert sender.step() > 0
    assert outbox.depth() == 3
    assert outbox.dead_letters() == 0
    assert sender.step() == 0
    assert outbox.depth() == 0
    assert sender.counts["accepted"] == 3


def test_429_waits_as_long_as_retry_after_says(
    tmp_path: Any, state: sqlite3.Connection, outbox: Outbox, clock: FakeClock
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "42"}, json={"reason": "slow down"})

    sender = delivery(tmp_path, state, outbox, clock, handler, batch_age_seconds=0)
    fill(state, outbox, 2)
    assert sender.step() == 42
    assert outbox.depth() == 2
    assert sender.retrying


def test_retry_after_as_an_http_date() -> None:
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412470.0) == 10.0
    assert retry_after("soon", 0) is None
    assert retry_after(None, 0) is None


def test_events_the_server_rejects_move_to_the_dead_letters(
    tmp_path: Any, state: sqlite3.Connection, outbox: Outbox, clock: FakeClock
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        count = len(sent_events(request))
        statuses = ["accepted", "rejected", "duplicate", "rejected"][:count]
        return answer(statuses, {1: "item: unknown item code 'x'", 3: "at: too late"})

    sender = delivery(tmp_path, state, outbox, clock, handler, batch_age_seconds=0)
    fill(state, outbox, 4)
    assert sender.step() == 0
    assert outbox.depth() == 0
    assert outbox.dead_letters() == 2
    letters = outbox.list_dead(state)
    assert [(d.event_id, d.reason, d.status) for d in letters] == [
        ("e-2", "item: unknown item code 'x'", 200),
        ("e-4", "at: too late", 200),
    ]
    assert sender.counts == {"accepted": 1, "duplicate": 1, "rejected": 2, "failed_attempts": 0}


def test_a_batch_refused_with_400_is_dead_lettered_not_retried(
    tmp_path: Any, state: sqlite3.Connection, outbox: Outbox, clock: FakeClock
) -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(400, json={"reason": "the body is neither JSON nor JSON Lines"})

    sender = delivery(tmp_path, state, outbox, clock, handler, batch_age_seconds=0)
    fill(state, outbox, 3)
    assert sender.step() == 0
    assert sender.step() > 0
    assert calls == 1
    assert outbox.depth() == 0
    assert outbox.dead_letters() == 3
    assert outbox.list_dead(state)[0].reason == (
        "HTTP 400: the body is neither JSON nor JSON Lines"
    )


@pytest.mark.parametrize("status", [401, 403])
def test_a_token_problem_keeps_the_rows(
    tmp_path: Any, state: sqlite3.Connection, outbox: Outbox, clock: FakeClock, status: int
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"reason": "the bearer token is unknown or revoked"})

    sender = delivery(tmp_path, state, outbox, clock, handler, batch_age_seconds=0)
    fill(state, outbox, 3)
    for _ in range(3):
        assert sender.step() > 0
    assert outbox.depth() == 3
    assert outbox.dead_letters() == 0


def test_413_splits_the_batch_until_it_fits(
    tmp_path: Any, state: sqlite3.Connection, outbox: Outbox, clock: FakeClock
) -> None:
    sizes: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        events = sent_events(request)
        sizes.append(len(events))
        if len(events) > 3:
            return httpx.Response(413, json={"reason": "too large"})
        return accept_all(request)

    sender = delivery(tmp_path, state, outbox, clock, handler, batch_age_seconds=0)
    fill(state, outbox, 10)
    assert sender.step() == 0
    assert outbox.depth() == 0
    assert sizes == [10, 5, 2, 3, 5, 2, 3]


def test_an_answer_without_results_is_retried(
    tmp_path: Any, state: sqlite3.Connection, outbox: Outbox, clock: FakeClock
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"results": []})

    sender = delivery(tmp_path, state, outbox, clock, handler, batch_age_seconds=0)
    fill(state, outbox, 2)
    assert sender.step() > 0
    assert outbox.depth() == 2
    assert outbox.dead_letters() == 0
