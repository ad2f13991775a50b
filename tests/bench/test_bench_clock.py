"""The clock benchmark's oracle, as a test: `Clock` must agree with the day-walking baseline.

The benchmark (bench/clock.py) is a script, not a package; it is loaded from
its file. Nothing here is timed.
"""

from __future__ import annotations

from datetime import date, datetime
from types import ModuleType
from zoneinfo import ZoneInfo

import pytest
from scriptload import load_script

from casework.clock import Limits
from casework.events import CaseEvent


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_script("bench/clock.py", "esup_bench_clock")


def test_clock_agrees_with_the_day_walking_baseline(bench: ModuleType) -> None:
    report = bench.run_oracle(2_000, seed=7)
    details = "\n\n".join(bench.describe(*diff) for diff in report.differences)
    assert report.agreed == report.compared == 2_000, details
    # The sample exercises more than completed cases.
    assert {"normal", "warning", "yellow", "red", "suspended"} <= set(report.levels)


def test_generator_is_seeded_and_covers_the_rules(bench: ModuleType) -> None:
    holidays, workdays = bench.package_days()
    first = bench.CaseGenerator(3, holidays, workdays)
    cases = first.cases(2_000)
    again = bench.CaseGenerator(3, holidays, workdays).cases(2_000)
    assert cases == again
    for kind in ("suspension early", "suspension overrun", "suspension open", "extension"):
        assert first.stats[kind] > 0, kind
    assert first.stats["duplicate"] > 0
    assert 0.6 < first.stats["closed"] / 2_000 < 0.8


def test_baseline_on_the_published_example(bench: ModuleType) -> None:
    """Accepted 2018-10-15 10:00, promised 7, legal 10: warning 10-22, yellow 10-25, red 10-30."""
    tz = ZoneInfo("Asia/Shanghai")
    accepted = datetime(2018, 10, 15, 10, tzinfo=tz)
    events = [CaseEvent("e1", "2018-XK-0001", "zrzy", "zrzy-001", "accepted", accepted)]
    baseline = bench.DayWalkClock(*bench.package_days())
    r = baseline.evaluate(events, Limits(7, 10), datetime(2018, 11, 1, tzinfo=tz))
    assert (r.state, r.level, r.promised_due, r.legal_due) == (
        "open",
        "red",
        date(2018, 10, 24),
        date(2018, 10, 29),
    )
    assert r.cards == (
        ("warning", datetime(2018, 10, 22, tzinfo=tz)),
        ("yellow", datetime(2018, 10, 25, tzinfo=tz)),
        ("red", datetime(2018, 10, 30, tzinfo=tz)),
    )
