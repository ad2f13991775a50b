"""``POST /api/v1/events``, ``/healthz`` and ``/readyz`` on SQLite and PostgreSQL."""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from casework.config import Deployment
from casework.configfiles import load_config
from server.api.ingest import RefusedError, gunzip
from server.app import create_app
from server.ingest import CaseKey, raw_pieces
from server.settings import ServerSettings
from server.store import tables
from server.store.events import EventStore
from server.store.streams import StreamStore, find_gaps
from server.store.tokens import TokenStore

CONFIG = Path(__file__).resolve().parents[2] / "config"
NOW = datetime(2024, 3, 1, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai


@pytest.fixture(scope="module")
def deployment() -> Deployment:
    return load_config(CONFIG)


def event(n: int, **fields: Any) -> dict[str, Any]:
    """A valid `accepted` event of fgw, number `n`, with `fields` overriding."""
    base: dict[str, Any] = {
        "event_id": f"e-{n}",
        "case_id": f"C-{n}",
        "department": "fgw",
        "item": "fgw-001",
        "type": "accepted",
        "at": "2024-03-01T09:30:00+08:00",
    }
    base.update(fields)
    return base


def lines(*events: dict[str, Any]) -> bytes:
    return "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events).encode()


@dataclass
class Server:
    client: TestClient
    engine: Engine
    token: str
    heard: list[set[CaseKey]]

    def post(self, body: bytes | list[dict[str, Any]], **headers: str) -> Any:
        if isinstance(body, list):
            body = json.dumps(body).encode()
            headers.setdefault("content-type", "application/json")
        headers.setdefault("authorization", f"Bearer {self.token}")
        return self.client.post("/api/v1/events", content=body, headers=headers)

    def count(self, table: Any) -> int:
        with self.engine.connect() as connection:
            n: int = connection.execute(select(func.count()).select_from(table)).scalar_one()
            return n


def make_server(
    engine: Engine, deployment: Deployment, *, max_body_bytes: int = 64 * 1024
) -> Iterator[Server]:
    heard: list[set[CaseKey]] = []
    settings = ServerSettings(max_body_bytes=max_body_bytes, clock_skew_seconds=300)
    app = create_app(
        settings, engine=engine, deployment=deployment, now=lambda: NOW, on_accepted=heard.append
    )
    token = TokenStore(engine).create("agent-1", ["fgw", "jyj", "ghost"])
    with TestClient(app) as client:
        yield Server(client, engine, token, heard)


@pytest.fixture
def server(migrated: Engine, deployment: Deployment) -> Iterator[Server]:
    yield from make_server(migrated, deployment)


def test_one_batch_accepted_duplicate_and_rejected(server: Server) -> None:
    batch = [
        event(1),
        event(1, case_id="C-other"),  # same event_id: a duplicate, the first one kept
        event(2, department="zrzy", item="zrzy-002"),  # outside the token's scope
        event(3, department="ghost"),  # in scope, not in the configuration
        event(4, item="nope-001"),
        event(5, item="jyj-001"),  # another department's approval item
        event(6, at="2024-03-01T12:06:00+08:00"),  # beyond 300 s of skew
        event(7, at="2024-03-01T09:30:00"),  # no offset
        event(8, type="opened"),
        event(9, item="fgw-001-01", at="2024-03-01T12:04:00+08:00"),  # sub-item, within skew
        event(10, department="jyj", item="rx-zx"),  # a shared petition item
        event(11, seq="5"),
    ]
    response = server.post(batch)
    assert response.status_code == 200
    body = response.json()
    statuses = [(r["index"], r["event_id"], r["status"]) for r in body["results"]]
    assert statuses == [
        (0, "e-1", "accepted"),
        (1, "e-1", "duplicate"),
        *[(i, f"e-{i}", "rejected") for i in range(2, 9)],
        (9, "e-9", "accepted"),
        (10, "e-10", "accepted"),
        (11, "e-11", "rejected"),
    ]
    assert (body["accepted"], body["duplicate"], body["rejected"]) == (3, 1, 8)
    reasons = [r["reason"] for r in body["results"]]
    assert reasons[0] is None
    assert reasons[1] is None
    assert reasons[2].startswith("department: 'zrzy' is outside the token's scope")
    assert "fgw, ghost, jyj" in reasons[2]
    assert reasons[3] == "department: unknown department code 'ghost'"
    assert reasons[4] == "item: unknown item code 'nope-001'"
    assert reasons[5] == "item: 'jyj-001' belongs to department 'jyj', not 'fgw'"
    assert reasons[6].startswith("at: 2024-03-01T12:06:00+08:00 is later than the server's clock")
    assert reasons[7].startswith("at: timestamp has no UTC offset")
    assert reasons[8].startswith("type: ")
    assert reasons[11].startswith("seq: ")

    assert server.count(tables.events) == 3
    assert server.count(tables.quarantine) == 8
    kept = EventStore(server.engine).quarantined()
    assert [q.reason for q in reversed(kept)] == [r for r in reasons if r is not None]
    assert {q.agent for q in kept} == {"agent-1"}
    assert json.loads(kept[0].body) == batch[11]  # the body as received
    assert server.heard == [{("fgw", "C-1"), ("fgw", "C-9"), ("jyj", "C-10")}]


@pytest.mark.parametrize("content_type", ["application/json", "application/x-ndjson"])
def test_values_no_store_can_keep_are_rejected_not_the_batch(
    server: Server, content_type: str
) -> None:
    """A NUL character (PostgreSQL's text cannot hold one) or a `seq` beyond 64 bits is the
    event's problem, with a reason naming the field; the good events of the batch go in."""
    batch = [
        event(1),
        event(2, case_id="C\x002"),
        event(3, type="completed", result="approved\x00"),
        event(4, seq=2**63),
        event(5, source="drop\x00folder", seq=1),
        event(6, seq=2**63 - 1),
    ]
    if content_type == "application/json":
        response = server.post(json.dumps(batch).encode(), **{"content-type": content_type})
    else:  # one more line: a raw NUL byte, not JSON at all
        body = lines(*batch) + b'{"event_id": "e-7\x00"}\n'
        response = server.post(body, **{"content-type": content_type})
    assert response.status_code == 200
    results = response.json()["results"]
    statuses = [r["status"] for r in results]
    assert statuses[:6] == ["accepted", *["rejected"] * 4, "accepted"]
    reasons = [r["reason"] for r in results]
    assert reasons[1].startswith("case_id: must not contain the NUL character (U+0000)")
    assert reasons[2].startswith("result: must not contain the NUL character (U+0000)")
    assert reasons[3].startswith("seq: must be at most 9223372036854775807")
    assert reasons[4] == "source: must not contain the NUL character (U+0000)"
    assert server.count(tables.events) == 2
    kept = EventStore(server.engine).quarantined()
    assert len(kept) == len(results) - 2
    if content_type != "application/json":
        assert statuses[6] == "rejected"
        assert reasons[6].startswith("malformed JSON")
        assert kept[0].body == '{"event_id": "e-7\\u0000"}'  # kept, its NUL escaped


@pytest.mark.parametrize("content_type", ["application/json", "application/x-ndjson"])
def test_an_instant_with_no_utc_equivalent_is_one_events_problem(
    server: Server, content_type: str
) -> None:
    batch = [event(1), event(2, at="0001-01-01T00:30:00+01:00")]
    body = json.dumps(batch).encode() if content_type == "application/json" else lines(*batch)
    response = server.post(body, **{"content-type": content_type})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["accepted", "rejected"]
    assert results[1]["reason"].startswith("at: is not a valid date and time")


def test_a_resent_batch_is_all_duplicates(server: Server) -> None:
    batch = [event(1), event(2), event(3, type="opened")]
    first = server.post(batch).json()
    again = server.post(batch).json()
    assert (first["accepted"], first["duplicate"], first["rejected"]) == (2, 0, 1)
    assert (again["accepted"], again["duplicate"], again["rejected"]) == (0, 2, 1)
    assert server.count(tables.events) == 2
    assert len(server.heard) == 1  # nothing new, nobody told


def test_json_lines_and_gzip(server: Server) -> None:
    response = server.post(
        lines(event(1), event(2)) + b"not json\n", **{"content-type": "application/x-ndjson"}
    )
    assert [r["status"] for r in response.json()["results"]] == ["accepted"] * 2 + ["rejected"]
    assert [q.body for q in EventStore(server.engine).quarantined()] == ["not json"]

    plain = lines(event(3), event(4))
    response = server.post(gzip.compress(plain), **{"content-encoding": "gzip"})
    assert response.status_code == 200
    assert response.json()["accepted"] == 2

    packed = gzip.compress(json.dumps([event(5)]).encode()) + gzip.compress(b"")
    response = server.post(packed, **{"content-encoding": "gzip"})
    assert response.json()["accepted"] == 1
    assert server.count(tables.events) == 5


def test_refused_bodies(server: Server) -> None:
    response = server.post(b"<xml/>")
    assert response.status_code == 400
    assert "neither a JSON array" in response.json()["reason"]

    response = server.post(b"[{broken", **{"content-type": "application/json"})
    assert response.status_code == 400

    response = server.post(b"\x1f\x8b\x08garbage", **{"content-encoding": "gzip"})
    assert response.status_code == 400
    assert "gzip" in response.json()["reason"]

    truncated = gzip.compress(lines(event(1)))[:-10]
    assert server.post(truncated, **{"content-encoding": "gzip"}).status_code == 400

    response = server.post(lines(event(1)), **{"content-encoding": "br"})
    assert response.status_code == 415
    assert server.count(tables.events) == 0


def test_oversize_bodies_get_413(server: Server) -> None:
    limit = 64 * 1024
    big = lines(*(event(n, step="x" * 200) for n in range(400)))
    assert len(big) > limit
    response = server.post(big)
    assert response.status_code == 413
    assert str(limit) in response.json()["reason"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the bytes read are counted
        for start in range(0, len(big), 4096):
            yield big[start : start + 4096]

    response = server.client.post(
        "/api/v1/events",
        content=chunks(),
        headers={"authorization": f"Bearer {server.token}"},
    )
    assert response.status_code == 413

    bomb = gzip.compress(b"[" + b" " * (50 * 1024 * 1024) + b"]")
    assert len(bomb) < limit
    response = server.post(bomb, **{"content-encoding": "gzip"})
    assert response.status_code == 413
    assert "decompressed" in response.json()["reason"]
    assert server.count(tables.events) == 0


def test_unauthorized_requests_get_401(server: Server) -> None:
    body = json.dumps([event(1)]).encode()
    cases = {
        "": "no bearer token",
        "Basic dXNlcjpwdw==": "not 'Bearer <token>'",
        "Bearer not-a-token": "unknown or revoked",
    }
    for header, reason in cases.items():
        headers = {"authorization": header} if header else {}
        response = server.client.post("/api/v1/events", content=body, headers=headers)
        assert response.status_code == 401
        assert reason in response.json()["reason"]
        assert response.headers["www-authenticate"] == "Bearer"

    TokenStore(server.engine).revoke("agent-1")
    response = server.post([event(1)])
    assert response.status_code == 401
    assert server.count(tables.events) == 0
    assert server.count(tables.quarantine) == 0


def test_sequence_gaps_are_recorded(server: Server) -> None:
    server.post([event(1, seq=1), event(2, seq=2), event(3, seq=3, source="dropdir")])
    server.post([event(4, seq=6), event(5, seq=3), event(6, seq=9, source="dropdir")])
    server.post([event(7, seq=5), event(8, seq=4)])  # late arrivals fill the gap: nothing new
    gaps = EventStore(server.engine).gaps()
    assert [(g.agent, g.source, g.expected, g.got) for g in reversed(gaps)] == [
        ("agent-1", "dropdir", 1, 3),
        ("agent-1", "", 4, 6),
        ("agent-1", "dropdir", 4, 9),
    ]
    assert gaps[0].detected_at == NOW
    streams = StreamStore(server.engine)
    assert streams.last_seq("agent-1") == 6
    assert streams.last_seq("agent-1", "dropdir") == 9
    assert streams.last_seq("agent-1", "nowhere") is None


def test_find_gaps() -> None:
    assert find_gaps(None, []) == ([], None)
    assert find_gaps(None, [1, 2]) == ([], 2)
    assert find_gaps(None, [2]) == ([(1, 2)], 2)
    assert find_gaps(3, [3, 2, 4, 7, 7, 5]) == ([(6, 7)], 7)
    assert find_gaps(10, [4]) == ([], 10)


def test_a_failing_listener_does_not_change_the_answer(
    migrated: Engine, deployment: Deployment, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(_cases: set[CaseKey]) -> None:
        raise RuntimeError("projector down")

    app = create_app(ServerSettings(), engine=migrated, deployment=deployment, on_accepted=broken)
    token = TokenStore(migrated).create("agent-1", ["fgw"])
    with TestClient(app) as client:
        response = client.post(
            "/api/v1/events", json=[event(1)], headers={"authorization": f"Bearer {token}"}
        )
    assert response.status_code == 200
    assert response.json()["accepted"] == 1
    assert "on_accepted failed" in caplog.text


def test_health_and_readiness(engine: Engine, deployment: Deployment) -> None:
    app: FastAPI = create_app(ServerSettings(), engine=engine, deployment=deployment)
    with TestClient(app) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        response = client.get("/readyz")
        assert response.status_code == 503
        assert "has no esup tables" in response.json()["reason"]
        openapi = client.get("/openapi.json").json()
        assert openapi["info"]["title"] == "esup server"
        assert "/api/v1/events" in openapi["paths"]


def test_ready_when_migrated(server: Server) -> None:
    assert server.client.get("/readyz").json() == {"status": "ready"}


def test_gunzip_limits() -> None:
    data = b"x" * 1000
    assert gunzip(gzip.compress(data), 1000) == data
    with pytest.raises(RefusedError) as excinfo:
        gunzip(gzip.compress(data), 999)
    assert excinfo.value.status == 413


def test_raw_pieces() -> None:
    assert raw_pieces(b'[{"a": 1}, 2]', None, 2) == ['{"a":1}', "2"]
    assert raw_pieces(b'{"a":1}\r\n\n{"b":2}\n', None, 2) == ['{"a":1}', '{"b":2}']
    assert raw_pieces(b'{\n"a": 1\n}', "application/json", 1) == ['{\n"a": 1\n}']
    assert raw_pieces(b"[1, 2]", None, 3) == []


def test_on_accepted_not_called_for_no_new_events(server: Server) -> None:
    server.post([event(1, type="opened")])
    assert server.heard == []


def test_far_future_is_relative_to_the_injected_clock(server: Server) -> None:
    limit = NOW + timedelta(seconds=300)
    ok = server.post([event(1, at=limit.isoformat())]).json()
    late = server.post([event(2, at=(limit + timedelta(seconds=1)).isoformat())]).json()
    assert ok["accepted"] == 1
    assert late["rejected"] == 1


def test_each_request_is_logged_once_with_its_status(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="server.access"):
        server.post(lines(event(1)), **{"content-type": "application/x-ndjson"})
        server.post(lines(event(2)), authorization="Bearer nope")
    logged = [r.getMessage() for r in caplog.records if r.name == "server.access"]
    assert [line.rsplit(" duration_ms=", 1)[0] for line in logged] == [
        "request method=POST path=/api/v1/events status=200",
        "request method=POST path=/api/v1/events status=401",
    ]
    assert all(line.endswith(" client=testclient") for line in logged)
