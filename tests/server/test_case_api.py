"""``GET /api/v1/cases/...``, ``GET /api/v1/cases`` and ``GET /api/v1/catalog``.

The case routes run on SQLite and on PostgreSQL, with events stored through
`EventStore` and cases derived by `CaseProjector`, as the server does. The
worked example is DESIGN.md's: accepted 2018-10-15 10:00, promised 7 and legal
10 working days: warning from 2018-10-22, yellow from 10-25, red from 10-30.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, update

from casework.clock import Clock
from casework.config import Deployment
from casework.configfiles import load_config
from casework.events import CaseEvent
from server.api.cases import MAX_LIMIT, CursorError, decode_cursor, encode_cursor
from server.api.catalog import FORMAT, catalog_router, etag_matches
from server.app import create_app
from server.cases import CaseProjector
from server.liveconfig import Configuration, LiveConfig
from server.settings import ServerSettings
from server.store import tables
from server.store.events import EventStore

CONFIG = Path(__file__).resolve().parents[2] / "config"
TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2018, 11, 1, 12, 0, tzinfo=TZ)
DEPARTMENTS = ("fgw", "jyj", "kjj")


@cache
def deployment() -> Deployment:
    return load_config(CONFIG)


@cache
def clock() -> Clock:
    return Clock.for_deployment(deployment())


def local(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=TZ)


def make_app(engine: Engine) -> FastAPI:
    app = create_app(ServerSettings(), engine=engine, deployment=deployment(), now=lambda: NOW)
    return app


def ingest(engine: Engine, events: list[CaseEvent]) -> None:
    EventStore(engine, now=lambda: NOW).add_batch("agent-1", events)
    projector = CaseProjector(engine, clock(), deployment(), now=lambda: NOW)
    projector.refresh(e.case_key for e in events)


def accepted(department: str, case_id: str, item: str, at: str, **fields: Any) -> CaseEvent:
    return CaseEvent(
        event_id=f"{case_id}-1",
        case_id=case_id,
        department=department,
        item=item,
        type="accepted",
        at=local(at),
        **fields,
    )


def completed(department: str, case_id: str, item: str, at: str) -> CaseEvent:
    return CaseEvent(
        event_id=f"{case_id}-2",
        case_id=case_id,
        department=department,
        item=item,
        type="completed",
        at=local(at),
        result="approved",
    )


@pytest.fixture
def client(migrated: Engine) -> Iterator[TestClient]:
    with TestClient(make_app(migrated)) as test_client:
        yield test_client


# -- one case ----------------------------------------------------------------------------


def test_the_published_example_is_red_with_three_cards_and_explained(
    migrated: Engine, client: TestClient
) -> None:
    event = accepted(
        "fgw",
        "X1",
        "fgw-002",
        "2018-10-15 10:00",
        promised_days=7,
        legal_days=10,
        extra={"note": "kept"},
    )
    ingest(migrated, [event])

    answer = client.get("/api/v1/cases/fgw/X1")

    assert answer.status_code == 200
    doc = answer.json()
    assert doc["events"] == [
        {
            "event_id": "X1-1",
            "case_id": "X1",
            "department": "fgw",
            "item": "fgw-002",
            "type": "accepted",
            "at": "2018-10-15T10:00:00+08:00",
            "promised_days": 7,
            "legal_days": 10,
            "note": "kept",
        }
    ]
    state = doc["state"]
    assert (state["state"], state["level"], state["card"]) == ("open", "red", "red")
    assert (state["promised_due"], state["legal_due"]) == ("2018-10-24", "2018-10-29")
    assert state["accepted_at"] == "2018-10-15T10:00:00+08:00"
    reached = [
        "2018-10-22T00:00:00+08:00",
        "2018-10-25T00:00:00+08:00",
        "2018-10-30T00:00:00+08:00",
    ]
    assert [(c["level"], c["reached_at"], c["voided_at"]) for c in doc["cards"]] == [
        ("warning", reached[0], None),
        ("yellow", reached[1], None),
        ("red", reached[2], None),
    ]
    explained = doc["explanation"]
    assert explained["format"] == "esup.explain/1"
    assert explained["at"] == NOW.isoformat()
    assert explained["level"] == "red"
    assert explained["limits"]["source"] == "accepted event"
    assert (explained["limits"]["promised_days"], explained["limits"]["legal_days"]) == (7, 10)
    assert [c["at"] for c in explained["cards"]] == reached
    assert explained["case"]["item_name"] == deployment().item("fgw-002").name


def test_a_voided_card_is_shown_with_its_reason_and_instant(
    migrated: Engine, client: TestClient
) -> None:
    ingest(migrated, [accepted("fgw", "X1", "fgw-002", "2018-10-15 10:00", promised_days=7)])
    k = tables.cards.c
    voided = datetime(2018, 10, 31, 9, 0, tzinfo=TZ)
    with migrated.begin() as connection:
        connection.execute(
            update(tables.cards)
            .where(k.case_id == "X1", k.level == "warning")
            .values(voided_at=voided, void_reason="appeal upheld")
        )

    cards = client.get("/api/v1/cases/fgw/X1").json()["cards"]

    warning = next(c for c in cards if c["level"] == "warning")
    assert warning["voided_at"] == "2018-10-31T09:00:00+08:00"
    assert warning["void_reason"] == "appeal upheld"
    assert len(cards) == 2  # promised 7, legal 20 from the catalog: warning and yellow by now


def test_an_unknown_case_is_404_with_a_reason(client: TestClient) -> None:
    answer = client.get("/api/v1/cases/fgw/NO-SUCH-CASE")
    assert answer.status_code == 404
    assert "no case fgw/NO-SUCH-CASE is known" in answer.json()["reason"]


def test_a_case_of_an_unknown_item_has_events_and_no_explanation(
    migrated: Engine, client: TestClient
) -> None:
    ingest(migrated, [accepted("fgw", "Y1", "no-such-item", "2018-10-15 10:00")])
    doc = client.get("/api/v1/cases/fgw/Y1").json()
    assert doc["state"]["state"] == "invalid"
    assert doc["explanation"] is None
    assert "no-such-item" in doc["explanation_problem"]


# -- the listing -------------------------------------------------------------------------


def seed(engine: Engine) -> dict[str, dict[str, str]]:
    """Ten cases in each of three departments; returns the expected rows by 'dept/case'.

    Per department: every third case closed on 2018-10-16, the next red (accepted
    2018-10-15, promised 7, legal 10) and the next normal (accepted 2018-10-31).
    fgw's closed cases name the sub-item fgw-001-01 of fgw-001.
    """
    events: list[CaseEvent] = []
    expected: dict[str, dict[str, str]] = {}
    for department in DEPARTMENTS:
        base = deployment().items_of(department)[0].code
        for n in range(10):
            case_id = f"C-{n:03d}"
            kind = n % 3
            item = "fgw-001-01" if department == "fgw" and kind == 0 else base
            limits = {"promised_days": 7, "legal_days": 10}
            if kind == 2:
                events.append(accepted(department, case_id, item, "2018-10-31 10:00", **limits))
                row = {"state": "open", "level": "normal"}
            else:
                events.append(accepted(department, case_id, item, "2018-10-15 10:00", **limits))
                row = {"state": "open", "level": "red"}
            if kind == 0:
                events.append(completed(department, case_id, item, "2018-10-16 15:00"))
                row = {"state": "closed", "level": "completed"}
            expected[f"{department}/{case_id}"] = {**row, "item": item}
    ingest(engine, events)
    return expected


def pages(client: TestClient, query: str) -> list[list[dict[str, Any]]]:
    """Every page of the listing for `query`, following `next` to the end."""
    out: list[list[dict[str, Any]]] = []
    url = f"/api/v1/cases?{query}"
    while True:
        answer = client.get(url)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        out.append(body["cases"])
        if body["next"] is None:
            return out
        url = f"/api/v1/cases?{query}&after={body['next']}"


def keys(rows: list[dict[str, Any]]) -> list[str]:
    return [f"{r['department']}/{r['case_id']}" for r in rows]


def test_paging_covers_every_case_once_in_key_order(migrated: Engine, client: TestClient) -> None:
    expected = seed(migrated)
    got = pages(client, "limit=7")
    assert [len(p) for p in got] == [7, 7, 7, 7, 2]
    flat = keys([r for page in got for r in page])
    assert flat == sorted(expected)
    row = next(r for page in got for r in page if r["case_id"] == "C-001")
    assert row["accepted_at"] == "2018-10-15T10:00:00+08:00"
    assert row["promised_due"] == "2018-10-24"


def test_a_page_that_ends_exactly_at_the_last_case_has_no_next(
    migrated: Engine, client: TestClient
) -> None:
    seed(migrated)
    assert [len(p) for p in pages(client, "limit=10")] == [10, 10, 10]
    assert [len(p) for p in pages(client, "")] == [30]


@pytest.mark.parametrize(
    ("query", "wanted"),
    [
        ("department=jyj", lambda key, row: key.startswith("jyj/")),
        ("state=closed", lambda key, row: row["state"] == "closed"),
        ("level=red", lambda key, row: row["level"] == "red"),
        ("item=fgw-001", lambda key, row: row["item"].startswith("fgw-001")),
        ("item=fgw-001-01", lambda key, row: row["item"] == "fgw-001-01"),
        (
            "department=kjj&state=open&level=normal",
            lambda key, row: key.startswith("kjj/") and row["level"] == "normal",
        ),
    ],
)
def test_filters_select_the_matching_cases_across_pages(
    migrated: Engine, client: TestClient, query: str, wanted: Any
) -> None:
    expected = seed(migrated)
    got = keys([r for page in pages(client, f"{query}&limit=3") for r in page])
    assert got == sorted(key for key, row in expected.items() if wanted(key, row))
    assert got  # every filter above selects something


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("state=shut", ["state='shut'", "'open'", "'closed'", "'invalid'"]),
        ("level=amber", ["level='amber'", "'warning'", "'yellow'", "'red'"]),
        ("limit=0", ["limit='0'", f"1 to {MAX_LIMIT}"]),
        (f"limit={MAX_LIMIT + 1}", [f"limit='{MAX_LIMIT + 1}'", f"1 to {MAX_LIMIT}"]),
        ("limit=many", ["limit='many'", "whole number"]),
        ("department=fgwx", ["department='fgwx'", "'fgw'", "/api/v1/catalog"]),
        ("after=not-a-cursor", ["after='not-a-cursor'", "'next'"]),
    ],
)
def test_a_bad_parameter_is_400_naming_it_and_what_it_accepts(
    client: TestClient, query: str, named: list[str]
) -> None:
    answer = client.get(f"/api/v1/cases?{query}")
    assert answer.status_code == 400
    reason = answer.json()["reason"]
    for part in named:
        assert part in reason


def test_a_cursor_round_trips_and_a_forged_one_is_refused() -> None:
    assert decode_cursor(encode_cursor("fgw", "案件/001?")) == ("fgw", "案件/001?")
    with pytest.raises(CursorError):
        decode_cursor(encode_cursor("fgw", "x")[:-3])
    with pytest.raises(CursorError):
        decode_cursor("WzEsMl0")  # [1,2]: JSON, but not a case key


# -- the catalog -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def catalog_client() -> Iterator[TestClient]:
    app = FastAPI()
    app.include_router(catalog_router(LiveConfig(Configuration.of(deployment()))))
    with TestClient(app) as test_client:
        yield test_client


def test_the_catalog_holds_the_shipped_configuration(catalog_client: TestClient) -> None:
    answer = catalog_client.get("/api/v1/catalog")
    assert answer.status_code == 200
    doc = answer.json()
    assert doc["format"] == FORMAT
    assert doc["settings"] == {
        "city": "江临市",
        "timezone": "Asia/Shanghai",
        "warn_days": 2,
        "procedure_warn_days": 2,
    }
    assert len(doc["departments"]) == 94
    assert doc["departments"][0] == {
        "code": "fgw",
        "name": "市发展和改革委员会",
        "category": "government",
        "supervised": True,
    }
    approval = [i for i in doc["items"] if i["kind"] == "approval"]
    assert len(approval) == 170
    assert sum(len(i["sub_items"]) for i in approval) == 181
    fgw_001 = next(i for i in doc["items"] if i["code"] == "fgw-001")
    # The sub-item sets no limit of its own: the item's, and the deployment's warn_days.
    assert fgw_001["sub_items"][0] == {
        "code": "fgw-001-01",
        "name": "企业投资项目核准（核准）",
        "promised_days": 5,
        "legal_days": 20,
        "warn_days": 2,
    }
    for item in doc["items"]:
        for sub in [item, *item["sub_items"]]:
            limits = deployment().limits(sub["code"])
            assert (sub["promised_days"], sub["legal_days"], sub["warn_days"]) == (
                limits.promised_days,
                limits.legal_days,
                limits.warn_days,
            )
    assert doc["calendar"] == {
        "years": {},
        "holidays": [],
        "workdays": [],
        "window": {"first_year": 2000, "last_year": 2099},
        "last_covered_year": clock().calendar.last_covered_year,
    }
    assert doc["calendar"]["last_covered_year"] >= 2026


def test_the_catalog_is_304_while_the_etag_matches(catalog_client: TestClient) -> None:
    first = catalog_client.get("/api/v1/catalog")
    etag = first.headers["etag"]
    assert len(etag) == 66  # a quoted SHA-256 hex digest
    assert etag.startswith('"')

    same = catalog_client.get("/api/v1/catalog", headers={"If-None-Match": etag})
    assert same.status_code == 304
    assert same.content == b""
    assert same.headers["etag"] == etag

    weak = catalog_client.get("/api/v1/catalog", headers={"If-None-Match": f'"x", W/{etag}'})
    assert weak.status_code == 304

    other = catalog_client.get("/api/v1/catalog", headers={"If-None-Match": '"stale"'})
    assert other.status_code == 200
    assert other.content == first.content


def test_the_catalog_and_its_etag_follow_the_configuration_in_service() -> None:
    changed = deployment().model_copy(
        update={"settings": deployment().settings.model_copy(update={"warn_days": 3})}
    )
    live = LiveConfig(Configuration.of(deployment()))
    app = FastAPI()
    app.include_router(catalog_router(live))
    with TestClient(app) as test_client:
        first = test_client.get("/api/v1/catalog")
        live.replace(changed)
        second = test_client.get(
            "/api/v1/catalog", headers={"If-None-Match": first.headers["etag"]}
        )
    assert second.status_code == 200
    assert second.headers["etag"] != first.headers["etag"]
    assert second.json()["settings"]["warn_days"] == 3


def test_if_none_match_parsing() -> None:
    assert etag_matches("*", '"a"')
    assert etag_matches('"b", "a"', '"a"')
    assert not etag_matches(None, '"a"')
    assert not etag_matches('"ab"', '"a"')
