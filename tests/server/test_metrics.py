"""``GET /metrics``: the store's figures as Prometheus series, checked by the real promtool.

Runs on SQLite and PostgreSQL with the cases of tests/server/observed.py
posted through the ingest API, as an agent would.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import NoReturn
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from observed import AGENT, DEPARTMENTS, EXPECTED_CARDS, EXPECTED_OPEN, seed
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from casework.clock import Clock
from casework.config import Deployment
from casework.configfiles import load_config
from server.app import create_app
from server.cases import CaseProjector
from server.metrics import StoreCollector, reason_class
from server.metrics.store import snapshot_families
from server.settings import ServerSettings
from server.store.events import EventStore
from server.store.tokens import TokenStore

CONFIG = Path(__file__).resolve().parents[2] / "config"
TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2025, 6, 18, 10, 30, tzinfo=TZ)  # a Wednesday, in office hours

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@cache
def deployment() -> Deployment:
    return load_config(CONFIG)


def samples(text: str) -> Samples:
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


@pytest.fixture
def seeded(migrated: Engine) -> Iterator[TestClient]:
    """A TestClient on an app whose store holds the observed cases, evaluated at NOW."""
    projector = CaseProjector(
        migrated, Clock.for_deployment(deployment()), deployment(), now=lambda: NOW
    )
    settings = ServerSettings(metrics_cache_seconds=0)
    app = create_app(
        settings,
        engine=migrated,
        deployment=deployment(),
        now=lambda: NOW,
        on_accepted=projector.refresh,
    )
    token = TokenStore(migrated, now=lambda: NOW).create(AGENT, DEPARTMENTS)
    with TestClient(app) as client:
        seed(client, token, NOW)
        yield client


def test_open_cases_and_cards_are_counted_by_department_and_level(seeded: TestClient) -> None:
    found = samples(seeded.get("/metrics").text)

    for department in DEPARTMENTS:
        for level in ("normal", "warning", "yellow", "red", "suspended"):
            key = ("esup_open_cases", (("department", department), ("level", level)))
            assert found[key] == EXPECTED_OPEN.get((department, level), 0), key
        for level in ("warning", "yellow", "red"):
            key = ("esup_cards_issued_total", (("department", department), ("level", level)))
            assert found[key] == EXPECTED_CARDS.get((department, level), 0), key
    # Every configured department has its series, zero where nothing happened.
    assert found[("esup_open_cases", (("department", "kjj"), ("level", "red")))] == 0
    assert found[("esup_overdue_cases", (("department", "fgw"),))] == 2
    fgw_002 = (("department", "fgw"), ("item", "fgw-002"))
    assert found[("esup_item_open_cases", fgw_002)] == 4
    assert found[("esup_item_overdue_cases", fgw_002)] == 2
    assert found[("esup_item_open_cases", (("department", "fgw"), ("item", "fgw-001-01")))] == 0


def test_rates_come_with_their_numerators_and_denominators(seeded: TestClient) -> None:
    found = samples(seeded.get("/metrics").text)

    def value(name: str, period: str) -> float:
        return found[(name, (("department", "fgw"), ("period", period)))]

    for period in ("month", "year"):
        # fgw: 6 cases received this month (R1, Y1, L1 thirty days ago: in May), 2 completed.
        completed = value("esup_completion_numerator_cases", period)
        handled = value("esup_completion_denominator_cases", period)
        assert (completed, handled) == (2, 6)
        assert value("esup_completion_ratio", period) == pytest.approx(2 / 6)
        # E1 early, L1 late.
        assert value("esup_on_time_numerator_cases", period) == 1
        assert value("esup_on_time_denominator_cases", period) == 2
    # No case in kjj: the ratio is absent, its parts are 0.
    assert ("esup_completion_ratio", (("department", "kjj"), ("period", "year"))) not in found
    assert (
        found[("esup_completion_denominator_cases", (("department", "kjj"), ("period", "year")))]
        == 0
    )


def test_ingest_gaps_quarantine_agents_and_calendar(seeded: TestClient) -> None:
    found = samples(seeded.get("/metrics").text)

    assert found[("esup_ingest_events_total", (("outcome", "accepted"),))] == 11
    assert found[("esup_ingest_events_total", (("outcome", "rejected"),))] == 2
    assert found[("esup_quarantined_events_total", (("reason", "item"),))] == 1
    assert found[("esup_quarantined_events_total", (("reason", "json"),))] == 1
    assert found[("esup_sequence_gaps_total", (("agent", AGENT),))] == 1
    assert found[("esup_sequence_missing_events_total", (("agent", AGENT),))] == 2
    seen = found[("esup_agent_last_seen_timestamp_seconds", (("agent", AGENT),))]
    assert seen == NOW.timestamp()
    assert found[("esup_calendar_last_covered_year", ())] >= 2025
    until = found[("esup_calendar_covered_until_timestamp_seconds", ())]
    assert until >= datetime(2026, 1, 1, tzinfo=TZ).timestamp()
    assert found[("esup_calendar_working_time", ())] == 1


def test_request_durations_are_labelled_by_route_template_never_by_case_id(
    seeded: TestClient,
) -> None:
    assert seeded.get("/api/v1/cases/fgw/R1").status_code == 200
    text = seeded.get("/metrics").text
    found = samples(text)

    key = (
        "esup_http_request_duration_seconds_count",
        (("code", "200"), ("handler", "/api/v1/cases/{department}/{case_id}"), ("method", "GET")),
    )
    assert found[key] == 1
    for case_id in ("R1", "Y1", "W1", "N1", "E1", "L1", "R2", "N2"):
        assert f'"{case_id}"' not in text


def test_promtool_check_metrics_reports_nothing(
    seeded: TestClient, require_service: Callable[[str, str], NoReturn]
) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        require_service("promtool", "not on PATH (Debian package prometheus)")
    seeded.get("/api/v1/cases/fgw/R1")
    exposition = seeded.get("/metrics").text

    checked = subprocess.run(
        [promtool, "check", "metrics"],
        input=exposition,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert "esup_open_cases" in exposition
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, "", "")


def test_replicas_reading_one_store_answer_the_same(seeded: TestClient, migrated: Engine) -> None:
    one = snapshot_families(migrated, deployment(), NOW)
    two = snapshot_families(migrated, deployment(), NOW)

    assert one == two


class Ticks:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.value = 100.0

    def __call__(self) -> float:
        return self.value


def _exposed(collector: StoreCollector) -> Samples:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return samples(generate_latest(registry).decode())


def test_the_snapshot_is_kept_for_max_age_then_read_again(
    seeded: TestClient, migrated: Engine
) -> None:
    ticks = Ticks()
    collector = StoreCollector(
        migrated, deployment(), now=lambda: NOW, max_age=5, monotonic=ticks, background=False
    )
    key = ("esup_ingest_events_total", (("outcome", "rejected"),))
    assert _exposed(collector)[key] == 2
    EventStore(migrated, now=lambda: NOW).quarantine(AGENT, "{}", "case_id: is required")

    ticks.value += 4.9
    assert _exposed(collector)[key] == 2  # the kept snapshot
    ticks.value += 0.2
    assert _exposed(collector)[key] == 3  # read again


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("case_id: is required", "case_id"),
        ("item: unknown item code 'x'", "item"),
        ("at: 2030-01-01T00:00:00+00:00 is later than the server's clock allows", "at"),
        ("an event must be a JSON object, not an integer", "json"),
        ("malformed JSON: Expecting value", "json"),
        ("colour: whatever", "other"),
        ("something else entirely", "other"),
    ],
)
def test_reason_classes_are_a_fixed_set(reason: str, expected: str) -> None:
    assert reason_class(reason) == expected


def test_the_rendered_exposition_is_the_collected_families(migrated: Engine) -> None:
    collector = StoreCollector(migrated, deployment(), now=lambda: NOW, background=False)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)

    def without_status(text: str) -> Samples:
        return {k: v for k, v in samples(text).items() if not k[0].startswith("esup_metrics_")}

    assert without_status(collector.exposition().decode()) == without_status(
        generate_latest(registry).decode()
    )


def test_a_scrape_during_the_warm_up_read_waits_for_it(
    seeded: TestClient, migrated: Engine
) -> None:
    collector = StoreCollector(migrated, deployment(), now=lambda: NOW, max_age=3600)

    collector.warm_up()
    found = _exposed(collector)

    assert found[("esup_ingest_events_total", (("outcome", "accepted"),))] == 11
    assert collector.failures == 0


def test_scores_and_ranks_are_the_scoring_feeds(seeded: TestClient) -> None:
    """The running year's score, rank and rating of every department, as the feed says."""
    found = samples(seeded.get("/metrics").text)
    feed = seeded.get("/api/v1/scores", params={"period": str(NOW.year), "evidence": "false"})
    assert feed.status_code == 200, feed.text
    departments = feed.json()["departments"]
    assert len(departments) == len(deployment().departments)
    for d in departments:
        labels = (("category", d["category"]), ("department", d["department"]))
        assert found[("esup_score_points", labels)] == pytest.approx(d["final"])
        assert found[("esup_score_rank", labels)] == d["rank"]
        rating = (("department", d["department"]), ("rating", d["rating"]))
        assert found[("esup_score_rating", rating)] == 1
        assert found[("esup_score_vetoed", (("department", d["department"]),))] == d["vetoed"]
    # A department with cards ranks by its deductions: its score is below a clean one's.
    by_code = {d["department"]: d for d in departments}
    assert by_code["fgw"]["final"] < by_code["kjj"]["final"]
