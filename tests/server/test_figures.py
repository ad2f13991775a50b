"""The figures of docs/design.md, on SQLite and on PostgreSQL alike.

The seeded year is checked against a count made here, in Python, from the
generated case histories: acceptance, closing and outcome straight from the
events the test wrote, timeliness and card instants from `Clock.evaluate`
on those same events (never read back from the database).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from figurecount import independent_counts
from sqlalchemy import Engine, create_engine, insert, select

from casework.clock import Clock
from casework.config import Deployment
from casework.configfiles import load_config
from casework.events import CaseEvent
from server.app import create_app
from server.cases import CaseProjector
from server.dailycounts import Tally, rebuild
from server.figures import (
    Figures,
    PeriodError,
    ScopeError,
    figures,
    figures_by_department,
    period_instants,
)
from server.settings import ServerSettings
from server.store import tables
from server.store.database import make_engine
from server.store.events import EventStore
from server.store.migrate import upgrade_engine

CONFIG = Path(__file__).resolve().parents[2] / "config"
UPDATED = datetime(2025, 3, 1, tzinfo=UTC)
Y2024 = (date(2024, 1, 1), date(2025, 1, 1))


@pytest.fixture(scope="module")
def deployment() -> Deployment:
    return load_config(CONFIG)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def case_row(
    n: int, accepted: str | None, closed: str | None = None, **fields: Any
) -> dict[str, Any]:
    """A `cases` row of fgw/fgw-001; instants in UTC ('2024-03-01 02:00')."""
    row: dict[str, Any] = {
        "department": "fgw",
        "case_id": f"C{n:05d}",
        "item": "fgw-001",
        "state": "open" if closed is None else "closed",
        "level": "normal",
        "accepted_at": utc(accepted) if accepted else None,
        "closed_at": utc(closed) if closed else None,
        "outcome": None,
        "timeliness": None,
        "anomalies": 0,
        "updated_at": UPDATED,
    }
    if closed is not None:
        row.update(outcome="completed", level="completed")
    row.update(fields)
    return row


def card_row(n: int, level: str, reached: str, voided: str | None = None) -> dict[str, Any]:
    return {
        "department": "fgw",
        "case_id": f"C{n:05d}",
        "level": level,
        "reached_at": utc(reached),
        "voided_at": utc(voided) if voided else None,
        "void_reason": "appeal upheld" if voided else None,
    }


def insert_rows(engine: Engine, cases: list[dict[str, Any]], cards: list[dict[str, Any]]) -> None:
    """Store case and card rows as given, then build the daily counts from them (in the
    reference city's zone), as a server does when it starts on such a database."""
    with engine.begin() as connection:
        if cases:
            connection.execute(insert(tables.cases), cases)
        if cards:
            connection.execute(insert(tables.cards), cards)
    rebuild(engine, ZoneInfo("Asia/Shanghai"))


# -- the seed check, scaled down -------------------------------------------------------


def seed_rows() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """226 received and 66 carried over in 2024; 282 completed (10 withdrawn)."""
    cases: list[dict[str, Any]] = []
    cards: list[dict[str, Any]] = []
    timeliness = ["early"] * 200 + ["on_time"] * 45 + ["immediate"] * 5 + ["late"] * 22
    n = 0

    def add(accepted: str | None, closed: str | None = None, **fields: Any) -> int:
        nonlocal n
        n += 1
        cases.append(case_row(n, accepted, closed, **fields))
        return n

    # 66 carried over: 60 closed in 2024, 6 still open at its end.
    closing = iter(timeliness)
    for _ in range(60):
        add("2023-12-20 02:00", "2024-01-10 02:00", timeliness=next(closing))
    open_carried = [add("2023-12-20 02:00") for _ in range(6)]
    # 226 received: 212 completed, 10 withdrawn, 4 open at the end (one of them closed
    # at 2025-01-01 00:00 local, the end itself).
    for _ in range(212):
        add("2024-03-01 02:00", "2024-03-20 02:00", timeliness=next(closing))
    for _ in range(10):
        add("2024-03-01 02:00", "2024-03-02 02:00", outcome="withdrawn", level="withdrawn")
    open_received = [add("2024-12-01 02:00") for _ in range(3)]
    add("2024-06-01 02:00", "2024-12-31 16:00", timeliness="early")
    # Outside: closed before the start (the last instant of 2023 local), accepted at the end.
    add("2023-06-01 02:00", "2023-12-31 15:59:59", timeliness="late")
    add("2024-12-31 16:00", None)  # 2025-01-01 00:00 local
    # Invalid cases, counted apart.
    add(None, None, state="invalid", level="invalid")
    add(None, None, state="invalid", level="invalid", item="fgw-001-01")

    # Cards: two carried-over cases yellow before the end (one red too), one whose only
    # yellow card was voided, one received case whose red came after the end.
    a, b, c = open_carried[:3]
    cards += [
        card_row(a, "warning", "2023-12-28 16:00"),  # before the period: not counted
        card_row(a, "yellow", "2024-01-02 16:00"),
        card_row(b, "warning", "2024-01-01 16:00"),
        card_row(b, "yellow", "2024-01-04 16:00"),
        card_row(b, "red", "2024-01-09 16:00"),
        card_row(c, "yellow", "2024-01-02 16:00", voided="2024-02-01 02:00"),
        card_row(open_received[0], "warning", "2024-12-20 16:00"),
        card_row(open_received[0], "yellow", "2024-12-31 16:00"),  # 2025 local
    ]
    return cases, cards


SEED_EXPECTED = {
    "received": 226,
    "carried_over": 66,
    "completed": 282,
    "withdrawn": 10,
    "early": 200,
    "on_time": 50,
    "late": 22,
    "open_at_end": 10,
    "overdue_at_end": 2,
    "warnings": 2,
    "yellow_cards": 2,
    "red_cards": 1,
    "invalid": 2,
}


def test_seed_check_scaled_down(migrated: Engine, deployment: Deployment) -> None:
    insert_rows(migrated, *seed_rows())
    result = figures(migrated, deployment, *Y2024)
    assert result.counts() == SEED_EXPECTED
    rate = result.completion_rate
    assert (rate.numerator, rate.denominator) == (282, 292)
    assert rate.value is not None
    assert round(rate.value * 100, 1) == 96.6
    on_time = result.on_time_rate
    assert (on_time.numerator, on_time.denominator) == (250, 272)
    # The same through every scope that holds all of it.
    for scope, code in [("category", "government"), ("department", "fgw"), ("item", "fgw-001")]:
        assert figures(migrated, deployment, *Y2024, scope, code).counts() == SEED_EXPECTED
    # A sub-item alone, and scopes that hold none of it.
    assert figures(migrated, deployment, *Y2024, "item", "fgw-001-01").counts() == {
        **dict.fromkeys(SEED_EXPECTED, 0),
        "invalid": 1,
    }
    empty = figures(migrated, deployment, *Y2024, "category", "stationed")
    assert set(empty.counts().values()) == {0}
    assert empty.completion_rate.value is None
    assert empty.to_json()["on_time_rate"] == {"value": None, "numerator": 0, "denominator": 0}


def test_the_period_is_in_local_dates(migrated: Engine, deployment: Deployment) -> None:
    """DESIGN's example: accepted 2007-12-31T16:30:00Z is 2008-01-01 00:30 in Shanghai."""
    insert_rows(migrated, [case_row(1, "2007-12-31 16:30")], [])
    assert figures(migrated, deployment, date(2008, 1, 1), date(2009, 1, 1)).received == 1
    in_2007 = figures(migrated, deployment, date(2007, 1, 1), date(2008, 1, 1))
    assert (in_2007.received, in_2007.open_at_end) == (0, 0)
    assert period_instants(deployment, date(2008, 1, 1), date(2008, 1, 2)) == (
        utc("2007-12-31 16:00"),
        utc("2008-01-01 16:00"),
    )


def test_figures_by_department(migrated: Engine, deployment: Deployment) -> None:
    cases, cards = seed_rows()
    cases.append({**case_row(1, "2024-05-01 02:00"), "department": "jyj", "item": "jyj-001"})
    insert_rows(migrated, cases, cards)
    split = figures_by_department(migrated, deployment, *Y2024)
    assert set(split) == {d.code for d in deployment.departments}
    assert split["fgw"].counts() == SEED_EXPECTED
    assert (split["jyj"].received, split["jyj"].open_at_end) == (1, 1)
    assert set(split["kjj"].counts().values()) == {0}
    total = figures(migrated, deployment, *Y2024)
    assert sum((Counter(f.counts()) for f in split.values()), Counter()) == +Counter(total.counts())
    assert set(figures_by_department(migrated, deployment, *Y2024, "item", "jyj-001")) == {"jyj"}
    category = figures_by_department(migrated, deployment, *Y2024, "category", "party_mass")
    assert {deployment.department(code).category for code in category} == {"party_mass"}


def test_bad_scope_code_and_period(migrated: Engine, deployment: Deployment) -> None:
    with pytest.raises(ScopeError, match="Valid choices: all, category, department, item"):
        figures(migrated, deployment, *Y2024, "city")
    with pytest.raises(ScopeError, match="government, party_mass, stationed"):
        figures(migrated, deployment, *Y2024, "category", "ministry")
    with pytest.raises(ScopeError, match="'nope'"):
        figures(migrated, deployment, *Y2024, "department", "nope")
    with pytest.raises(ScopeError, match="'nope-001'"):
        figures(migrated, deployment, *Y2024, "item", "nope-001")
    with pytest.raises(ScopeError, match="needs a code"):
        figures(migrated, deployment, *Y2024, "item")
    with pytest.raises(ScopeError, match="takes no code"):
        figures(migrated, deployment, *Y2024, "all", "fgw")
    with pytest.raises(PeriodError, match="not after its start"):
        figures(migrated, deployment, date(2024, 1, 1), date(2024, 1, 1))


# -- a seeded synthetic year -----------------------------------------------------------

DEPARTMENTS = ("fgw", "jyj", "kjj")  # government
NOW = datetime(2025, 3, 1, 4, 0, tzinfo=UTC)
FIRST = datetime(2023, 10, 1, tzinfo=UTC)
SPAN_SECONDS = int((datetime(2025, 1, 2, tzinfo=UTC) - FIRST).total_seconds())


def synthetic_year(deployment: Deployment, seed: int = 2024, n: int = 2500) -> list[CaseEvent]:
    """`n` cases of three departments, accepted from 2023-10 to 2025-01, some never closed."""
    rng = random.Random(seed)
    codes = {
        dept: [
            c
            for item in deployment.items_of(dept)
            for c in (item.code, *(s.code for s in item.sub_items))
        ]
        for dept in DEPARTMENTS
    }
    out: list[CaseEvent] = []
    for i in range(n):
        dept = rng.choice(DEPARTMENTS)
        item = rng.choice(codes[dept])
        case_id = f"S{i:05d}"
        if i % 500 == 7:  # no acceptance: invalid
            out.append(_event(case_id, dept, item, 1, "completed", NOW - timedelta(days=9)))
            continue
        accepted = FIRST + timedelta(seconds=rng.randrange(SPAN_SECONDS))
        if i % 250 == 3:  # right on a local-midnight year boundary
            accepted = utc("2023-12-31 16:30")
        out.append(_event(case_id, dept, item, 1, "accepted", accepted))
        roll = rng.random()
        closed = accepted + timedelta(seconds=rng.randrange(45 * 86400))
        if roll < 0.85 and closed < NOW:
            kind = "completed" if roll < 0.78 else "withdrawn"
            out.append(_event(case_id, dept, item, 2, kind, closed))
    return out


def _event(case_id: str, dept: str, item: str, n: int, kind: str, at: datetime) -> CaseEvent:
    return CaseEvent(
        event_id=f"{case_id}-{n}",
        case_id=case_id,
        department=dept,
        item=item,
        type=kind,  # type: ignore[arg-type]
        at=at,
        result="approved" if kind == "completed" else None,
    )


def expected_counts(
    deployment: Deployment, events: list[CaseEvent], start: date, end: date, dept: str | None
) -> dict[str, int]:
    """The figures counted in Python from the case histories (tests/figurecount.py)."""
    n = independent_counts(deployment, events, start, end, NOW, dept)
    return {name: n[name] for name in SEED_EXPECTED}


def load(engine: Engine, deployment: Deployment, events: list[CaseEvent]) -> None:
    upgrade_engine(engine)
    store = EventStore(engine, now=lambda: NOW)
    for k in range(0, len(events), 1000):
        store.add_batch("agent-1", events[k : k + 1000])
    projector = CaseProjector(engine, Clock.for_deployment(deployment), deployment, now=lambda: NOW)
    projector.refresh(e.case_key for e in events)


@pytest.fixture(scope="module")
def year(deployment: Deployment) -> list[CaseEvent]:
    return synthetic_year(deployment)


PERIODS = [
    Y2024,
    (date(2024, 1, 1), date(2024, 2, 1)),
    (date(2024, 10, 1), date(2024, 10, 8)),
    (date(2023, 12, 31), date(2024, 1, 2)),
]


def test_a_synthetic_year_matches_an_independent_count(
    engine: Engine, deployment: Deployment, year: list[CaseEvent]
) -> None:
    load(engine, deployment, year)
    for start, end in PERIODS:
        total = figures(engine, deployment, start, end)
        assert total.counts() == expected_counts(deployment, year, start, end, None), (start, end)
        split = figures_by_department(engine, deployment, start, end, "category", "government")
        for dept in DEPARTMENTS:
            assert split[dept].counts() == expected_counts(deployment, year, start, end, dept)
    full = figures(engine, deployment, *Y2024)
    assert full.received > 1000
    assert full.carried_over > 100
    assert min(full.counts().values()) > 0


def daily_counts(engine: Engine) -> dict[tuple[str, str, date], tuple[int, ...]]:
    """The non-zero rows of `daily_counts`."""
    d = tables.daily_counts
    with engine.connect() as connection:
        rows = connection.execute(d.select()).all()
    return {
        (r.department, r.item, r.day): tuple(r[3:])
        for r in rows
        if any(r[3:])  # a row whose counts came and went stays, at zero
    }


@pytest.mark.parametrize("seed", [1, 2])
def test_figures_do_not_depend_on_arrival_order(
    engine: Engine, deployment: Deployment, seed: int
) -> None:
    """The same events shuffled, partly sent twice and split across batches, each batch
    projected as it arrives (so cards are issued, then superseded by late completions):
    the figures equal the independent count, and the running daily counts equal a
    rebuild from the final cases and cards."""
    events = synthetic_year(deployment, seed=seed, n=800)
    rng = random.Random(seed)
    arriving = events + rng.sample(events, len(events) // 10)
    rng.shuffle(arriving)
    upgrade_engine(engine)
    store = EventStore(engine, now=lambda: NOW)
    projector = CaseProjector(engine, Clock.for_deployment(deployment), deployment, now=lambda: NOW)
    k = 0
    while k < len(arriving):
        size = rng.randint(1, 150)
        batch = arriving[k : k + size]
        k += size
        store.add_batch("agent-1", batch)
        projector.refresh(e.case_key for e in batch)
    for start, end in PERIODS:
        assert figures(engine, deployment, start, end).counts() == expected_counts(
            deployment, events, start, end, None
        ), (start, end)
    running = daily_counts(engine)
    rebuild(engine, deployment.settings.zone)
    assert daily_counts(engine) == running


def test_a_voided_card_leaves_the_figures(
    engine: Engine, deployment: Deployment, year: list[CaseEvent]
) -> None:
    load(engine, deployment, year)
    projector = CaseProjector(engine, Clock.for_deployment(deployment), deployment, now=lambda: NOW)
    k = tables.cards.c
    with engine.connect() as connection:
        department, case_id, reached_at = connection.execute(
            select(k.department, k.case_id, k.reached_at)
            .where(k.level == "red", k.voided_at.is_(None))
            .order_by(k.id)
        ).first()
    day = reached_at.astimezone(deployment.settings.zone).date()
    period = (day, day + timedelta(days=1))
    before = figures(engine, deployment, *period, "department", department)
    assert projector.void_card(department, case_id, "red", reason="appeal 7 upheld")
    after = figures(engine, deployment, *period, "department", department)
    assert after.red_cards == before.red_cards - 1
    assert not projector.void_card(department, case_id, "red", reason="appeal 7 upheld")
    # A later refresh leaves a card voided by appeal alone, and the counts with it.
    projector.refresh([(department, case_id)])
    assert figures(engine, deployment, *period, "department", department) == after
    running = daily_counts(engine)
    rebuild(engine, deployment.settings.zone)
    assert daily_counts(engine) == running


def test_sqlite_and_postgresql_give_identical_figures(
    tmp_path: Path,
    postgres_database: tuple[str, str],
    deployment: Deployment,
    year: list[CaseEvent],
) -> None:
    lite = make_engine(f"sqlite:///{tmp_path / 'esup.db'}")
    pg = make_engine(postgres_database[0])
    try:
        for engine in (lite, pg):
            load(engine, deployment, year)
        for start, end in PERIODS:
            for scope, code in [("all", None), ("item", "fgw-001"), ("department", "jyj")]:
                assert figures(lite, deployment, start, end, scope, code) == figures(
                    pg, deployment, start, end, scope, code
                )
            assert figures_by_department(lite, deployment, start, end) == figures_by_department(
                pg, deployment, start, end
            )
    finally:
        lite.dispose()
        pg.dispose()
        _drop_tables(postgres_database[0])


def _drop_tables(url: str) -> None:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("DROP SCHEMA public CASCADE")
            connection.exec_driver_sql("CREATE SCHEMA public")
    finally:
        engine.dispose()


# -- the API ---------------------------------------------------------------------------


@pytest.fixture
def client(migrated: Engine, deployment: Deployment) -> Iterator[TestClient]:
    insert_rows(migrated, *seed_rows())
    app = create_app(ServerSettings(), engine=migrated, deployment=deployment)
    with TestClient(app) as test_client:
        yield test_client


def test_rates_endpoint(client: TestClient) -> None:
    response = client.get("/api/v1/rates", params={"start": "2024-01-01", "end": "2025-01-01"})
    assert response.status_code == 200
    body = response.json()
    assert body == {
        "start": "2024-01-01",
        "end": "2025-01-01",
        "scope": "all",
        "code": None,
        **SEED_EXPECTED,
        "completion_rate": {"value": 282 / 292, "numerator": 282, "denominator": 292},
        "on_time_rate": {"value": 250 / 272, "numerator": 250, "denominator": 272},
    }
    params = {"start": "2024-01-01", "end": "2025-01-01", "scope": "item", "code": "fgw-001"}
    assert client.get("/api/v1/rates", params=params).json()["received"] == 226
    # DESIGN's shorthand: department=CODE is scope=department&code=CODE.
    short = {"start": "2024-01-01", "end": "2025-01-01", "department": "fgw"}
    long = {**short, "scope": "department", "code": "fgw"}
    del long["department"]
    assert client.get("/api/v1/rates", params=short).json() == (
        client.get("/api/v1/rates", params=long).json()
    )
    assert "/api/v1/rates" in client.get("/openapi.json").json()["paths"]


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"end": "2025-01-01"}, "The parameter start is missing"),
        ({"start": "2024-1-1", "end": "2025-01-01"}, "start='2024-1-1' is not a date"),
        ({"start": "2024-01-01", "end": "2024-02-30"}, "end='2024-02-30' is not a date"),
        ({"start": "2024-01-01", "end": "2024-01-01"}, "not after its start 2024-01-01"),
        (
            {"start": "2024-01-01", "end": "2025-01-01", "scope": "city"},
            "Valid choices: all, category, department, item",
        ),
        (
            {"start": "2024-01-01", "end": "2025-01-01", "scope": "department", "code": "nope"},
            "No department has the code 'nope'",
        ),
        (
            {"start": "2024-01-01", "end": "2025-01-01", "scope": "item", "code": "x-9"},
            "No item or sub-item has the code 'x-9'",
        ),
        ({"start": "2024-01-01", "end": "2025-01-01", "scope": "category"}, "needs a code"),
        (
            {"start": "2024-01-01", "end": "2025-01-01", "department": "fgw", "code": "x"},
            "give it alone",
        ),
    ],
)
def test_rates_endpoint_errors(client: TestClient, params: dict[str, str], reason: str) -> None:
    response = client.get("/api/v1/rates", params=params)
    assert response.status_code == 422
    assert reason in response.json()["reason"]


def test_figures_equal_by_value() -> None:
    assert Figures(*Y2024, "all", None, received=1) == Figures(*Y2024, "all", None, received=1)


def cards(rng: random.Random, accepted: datetime) -> dict[str, datetime]:
    """Some of the three cards, reached in the 90 days after `accepted`."""
    return {
        level: accepted + timedelta(hours=rng.randrange(24 * 90))
        for level in ("warning", "yellow", "red")
        if rng.random() < 0.6
    }


def test_changing_only_cards_counts_as_taking_the_case_away_and_adding_it_again() -> None:
    """`Tally.change_cards` (time passing) equals `add_case` of the case before and after."""
    rng = random.Random(5)
    zone = ZoneInfo("Asia/Shanghai")
    start = datetime(2025, 3, 1, tzinfo=zone)
    for _ in range(300):
        accepted = start + timedelta(hours=rng.randrange(24 * 60))
        closed = (
            accepted + timedelta(hours=rng.randrange(1, 24 * 60)) if rng.random() < 0.3 else None
        )
        case = {
            "state": "closed" if closed else "open",
            "item": "zrzy-001",
            "accepted_at": accepted,
            "closed_at": closed,
            "outcome": "completed" if closed else None,
            "timeliness": "late" if closed else None,
        }

        had, has = cards(rng, accepted), cards(rng, accepted)
        if rng.random() < 0.5:  # mostly time passing: the same cards and one more
            has = {**had, **dict(list(has.items())[:1])}
        whole, changed = Tally(zone), Tally(zone)
        whole.add_case(-1, "zrzy", case, had)
        whole.add_case(1, "zrzy", case, has)
        changed.change_cards("zrzy", case, had, has)
        net = [{slot: n for slot, n in t.slots.items() if any(n)} for t in (whole, changed)]
        assert net[0] == net[1], (case, had, has)
