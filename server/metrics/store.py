"""`StoreCollector`: the server's metrics, read from the store at scrape time.

    StoreCollector(engine, deployment, now=..., max_age=5, working_hours=...)
    StoreCollector.collect() -> the metric families of the latest snapshot
    StoreCollector.exposition() -> the same as text, rendered when the snapshot was read
    snapshot_families(engine, deployment, now, working_hours) -> one fresh snapshot
    reason_class(reason) -> the quarantine reason class of a rejection reason

Every family is built from the tables, never from counters kept in one
process, so every server replica sharing a database answers the same. A
snapshot is kept for `max_age` seconds; a scrape after that gets the kept one
at once while a background thread reads the next, so a scrape never waits on
the figures' queries but the first after a start (`warm_up()` begins that
read at start-up; a scrape meanwhile waits for it).
docs/metrics.md lists every series.
"""

from __future__ import annotations

import logging
import re
import threading
import time as timer
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime, time
from typing import Final

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy import Engine, case, func, select

from casework.calendar import WorkCalendar
from casework.casestate import LEVELS
from casework.config import Deployment
from casework.wire import WireEvent
from server.figures import Figures, figures_by_department
from server.metrics.scores import score_families
from server.scores.results import Scores
from server.store import tables

__all__ = [
    "OPEN_LEVELS",
    "PERIODS",
    "REASON_CLASSES",
    "StoreCollector",
    "covered_until",
    "reason_class",
    "snapshot_families",
]

logger = logging.getLogger(__name__)

#: Levels of an open case as the metrics show them.
OPEN_LEVELS: Final[tuple[str, ...]] = (*LEVELS, "suspended")
#: The card levels.
CARD_LEVELS: Final[tuple[str, ...]] = ("warning", "yellow", "red")
#: The periods of the rates: the current month and year, local time.
PERIODS: Final[tuple[str, ...]] = ("month", "year")
#: Ingest outcomes the tables can tell: an accepted event is in `events`, a rejected
#: one in `quarantine` (a duplicate leaves no row, so it is not counted here).
INGEST_OUTCOMES: Final[tuple[str, ...]] = ("accepted", "rejected")

#: Quarantine reason classes: the wire field a rejection names, `json` for a body or
#: line that is not a JSON object, `other` for anything else.
REASON_CLASSES: Final[tuple[str, ...]] = (
    *sorted({*WireEvent.model_fields, "source"}),
    "json",
    "other",
)
_FIELD: Final = re.compile(r"^([a-z_]+): ")
_REASON_PREFIX: Final = 40  # characters of a reason read to classify it
#: How long a scrape waits for a first read already under way before reading itself.
WARM_UP_WAIT_SECONDS: Final = 60.0


def reason_class(reason: str) -> str:
    """The class of a rejection reason: the field it names, ``json`` or ``other``.

    Reasons start with the field they are about (``"case_id: is required"``);
    one about the JSON itself names no field.
    """
    match = _FIELD.match(reason)
    if match and match.group(1) in REASON_CLASSES:
        return match.group(1)
    lowered = reason.lower()
    if "json" in lowered or "an event must be" in lowered:
        return "json"
    return "other"


def _utcnow() -> datetime:
    return datetime.now(UTC)


def covered_until(calendar: WorkCalendar, today: date) -> date:
    """The first day from `today` on whose year the calendar does not know.

    Years are covered one after the other from `today`'s; when `today`'s year
    itself is not covered, its first day.
    """
    year = today.year
    if not calendar.covers(year):
        return date(year, 1, 1)
    while calendar.covers(year + 1):
        year += 1
    return date(year + 1, 1, 1)


def _catalog_items(deployment: Deployment) -> list[tuple[str, str]]:
    """(department, code) of every item and sub-item the catalog assigns to a department."""
    found: list[tuple[str, str]] = []
    for item in deployment.items:
        if item.department is not None:
            found.append((item.department, item.code))
            found += [(item.department, sub.code) for sub in item.sub_items]
    return found


def _month_bounds(today: date) -> tuple[date, date]:
    start = today.replace(day=1)
    end = date(start.year + 1, 1, 1) if start.month == 12 else start.replace(month=start.month + 1)
    return start, end


def _rate_families(by_period: dict[str, dict[str, Figures]]) -> list[Metric]:
    names = {
        "completion": "completed (or withdrawn) / (received + carried over)",
        "on_time": "(early + on time) / (completed - withdrawn)",
    }
    families: list[Metric] = []
    for rate, what in names.items():
        ratio = GaugeMetricFamily(
            f"esup_{rate}_ratio",
            f"The {rate.replace('_', '-')} rate of the current period, {what}; "
            "absent while the denominator is 0.",
            labels=["department", "period"],
        )
        numerator = GaugeMetricFamily(
            f"esup_{rate}_numerator_cases",
            f"Numerator of esup_{rate}_ratio, in cases.",
            labels=["department", "period"],
        )
        denominator = GaugeMetricFamily(
            f"esup_{rate}_denominator_cases",
            f"Denominator of esup_{rate}_ratio, in cases.",
            labels=["department", "period"],
        )
        for period, per_department in by_period.items():
            for department, found in per_department.items():
                value = found.completion_rate if rate == "completion" else found.on_time_rate
                labels = [department, period]
                numerator.add_metric(labels, value.numerator)
                denominator.add_metric(labels, value.denominator)
                if value.value is not None:
                    ratio.add_metric(labels, value.value)
        families += [ratio, numerator, denominator]
    overdue = GaugeMetricFamily(
        "esup_overdue_cases",
        "Open cases with an unvoided yellow or red card, now.",
        labels=["department"],
    )
    for department, found in by_period["year"].items():
        overdue.add_metric([department], found.overdue_at_end)
    families.append(overdue)
    return families


def snapshot_families(
    engine: Engine,
    deployment: Deployment,
    now: datetime,
    working_hours: tuple[time, time] = (time(9), time(18)),
    calendar: WorkCalendar | None = None,
) -> list[Metric]:
    """Every store-backed metric family, read now from the database of `engine`.

    `calendar` defaults to the deployment's (building it takes a while: pass one in).
    """
    zone = deployment.settings.zone
    local = now.astimezone(zone)
    today = local.date()
    departments = [d.code for d in deployment.departments]
    c, k = tables.cases.c, tables.cards.c
    s, g = tables.streams.c, tables.seq_gaps.c
    q = tables.quarantine.c
    families: list[Metric] = []

    info = GaugeMetricFamily(
        "esup_department_info",
        "1 for each configured department, with its category.",
        labels=["department", "category"],
    )
    for d in deployment.departments:
        info.add_metric([d.code, d.category], 1)
    families.append(info)

    with engine.connect() as connection:
        open_counts = {
            (str(dep), str(level)): int(n)
            for dep, level, n in connection.execute(
                select(c.department, c.level, func.count())
                .where(c.state == "open")
                .group_by(c.department, c.level)
            )
        }
        item_rows = list(
            connection.execute(
                select(
                    c.department,
                    c.item,
                    func.count(),
                    func.sum(case((c.level.in_(("yellow", "red")), 1), else_=0)),
                )
                .where(c.state == "open")
                .group_by(c.department, c.item)
            )
        )
        card_rows = list(
            connection.execute(
                select(k.department, k.level, func.count(), func.count(k.voided_at)).group_by(
                    k.department, k.level
                )
            )
        )
        last_seen = list(
            connection.execute(
                select(s.agent, func.max(s.last_seen_at)).group_by(s.agent).order_by(s.agent)
            )
        )
        gap_rows = list(
            connection.execute(
                select(g.agent, func.count(), func.sum(g.got_seq - g.expected_seq))
                .group_by(g.agent)
                .order_by(g.agent)
            )
        )
        accepted = int(
            connection.execute(select(func.count()).select_from(tables.events)).scalar_one()
        )
        prefix = func.substr(q.reason, 1, _REASON_PREFIX)
        reasons: dict[str, int] = dict.fromkeys(REASON_CLASSES, 0)
        for text, n in connection.execute(select(prefix, func.count()).group_by(prefix)):
            reasons[reason_class(str(text))] += int(n)

    opened = GaugeMetricFamily(
        "esup_open_cases", "Open cases now, by level.", labels=["department", "level"]
    )
    for department in sorted({*departments, *(d for d, _ in open_counts)}):
        for level in sorted({*OPEN_LEVELS, *(lv for d, lv in open_counts if d == department)}):
            opened.add_metric([department, level], open_counts.get((department, level), 0))
    families.append(opened)

    item_open = GaugeMetricFamily(
        "esup_item_open_cases",
        "Open cases now, by item (or sub-item) as the events name it.",
        labels=["department", "item"],
    )
    item_overdue = GaugeMetricFamily(
        "esup_item_overdue_cases",
        "Open cases at yellow or red now, by item (or sub-item).",
        labels=["department", "item"],
    )
    by_item = {(str(dep), str(item)): (int(n), int(late or 0)) for dep, item, n, late in item_rows}
    for dep, item in sorted({*_catalog_items(deployment), *by_item}):
        n, late = by_item.get((dep, item), (0, 0))
        item_open.add_metric([dep, item], n)
        item_overdue.add_metric([dep, item], late)
    families += [item_open, item_overdue]

    issued = CounterMetricFamily(
        "esup_cards_issued",
        "Cards (warning, yellow, red) issued since the store began, voided ones included.",
        labels=["department", "level"],
    )
    voided = CounterMetricFamily(
        "esup_cards_voided",
        "Cards voided on appeal since the store began.",
        labels=["department", "level"],
    )
    cards = {(str(dep), str(level)): (int(n), int(v)) for dep, level, n, v in card_rows}
    for department in sorted({*departments, *(d for d, _ in cards)}):
        for level in CARD_LEVELS:
            n, v = cards.get((department, level), (0, 0))
            issued.add_metric([department, level], n)
            voided.add_metric([department, level], v)
    families += [issued, voided]

    month = _month_bounds(today)
    year = (date(today.year, 1, 1), date(today.year + 1, 1, 1))
    by_period = {
        "month": figures_by_department(engine, deployment, *month),
        "year": figures_by_department(engine, deployment, *year),
    }
    families += _rate_families(by_period)

    seen = GaugeMetricFamily(
        "esup_agent_last_seen_timestamp_seconds",
        "When the agent last delivered a batch, Unix time.",
        labels=["agent"],
    )
    for agent, at in last_seen:
        seen.add_metric([str(agent)], at.timestamp())
    gaps = CounterMetricFamily(
        "esup_sequence_gaps",
        "Jumps in an agent's per-source seq seen by the server.",
        labels=["agent"],
    )
    missing = CounterMetricFamily(
        "esup_sequence_missing_events",
        "Events skipped by those jumps (the sum of got - expected).",
        labels=["agent"],
    )
    for agent, n, skipped in gap_rows:
        gaps.add_metric([str(agent)], int(n))
        missing.add_metric([str(agent)], int(skipped or 0))
    families += [seen, gaps, missing]

    ingest = CounterMetricFamily(
        "esup_ingest_events",
        "Events the server stored: accepted (in the events table) or rejected (quarantined).",
        labels=["outcome"],
    )
    ingest.add_metric(["accepted"], accepted)
    ingest.add_metric(["rejected"], sum(reasons.values()))
    quarantined = CounterMetricFamily(
        "esup_quarantined_events",
        "Rejected events kept in quarantine, by the field their reason names.",
        labels=["reason"],
    )
    for name in REASON_CLASSES:
        quarantined.add_metric([name], reasons[name])
    families += [ingest, quarantined]

    calendar = WorkCalendar.from_config(deployment.calendar) if calendar is None else calendar
    last = GaugeMetricFamily(
        "esup_calendar_last_covered_year",
        "The last year whose holidays the calendar knows (0: none).",
    )
    last.add_metric([], calendar.last_covered_year or 0)
    until = GaugeMetricFamily(
        "esup_calendar_covered_until_timestamp_seconds",
        "Local midnight starting the first day, from today on, of a year the calendar "
        "does not know; Unix time.",
    )
    end = datetime.combine(covered_until(calendar, today), time(), tzinfo=zone)
    until.add_metric([], end.timestamp())
    working = GaugeMetricFamily(
        "esup_calendar_working_time",
        "1 during office hours of a working day by the calendar, else 0.",
    )
    in_hours = working_hours[0] <= local.time().replace(tzinfo=None) < working_hours[1]
    working.add_metric([], 1 if in_hours and calendar.is_working_day(today) else 0)
    families += [last, until, working]
    return families


class StoreCollector:
    """The store's metric families, from a snapshot at most `max_age` seconds old.

    `now` gives the instant the figures are for (aware); `monotonic` measures
    the snapshot's age. A scrape finding the snapshot older than `max_age`
    gets it at once and starts reading the next in a background thread (one
    at a time); `max_age=0` reads a fresh one on every scrape, synchronously.
    A failed read is logged and counted; the last snapshot is kept.
    """

    def __init__(
        self,
        engine: Engine,
        deployment: Deployment,
        *,
        now: Callable[[], datetime] = _utcnow,
        max_age: float = 5.0,
        working_hours: tuple[time, time] = (time(9), time(18)),
        monotonic: Callable[[], float] = timer.monotonic,
        background: bool = True,
    ) -> None:
        self.engine = engine
        self.deployment = deployment
        self.now = now
        self.max_age = max_age
        self.working_hours = working_hours
        self.monotonic = monotonic
        self.background = background
        #: The running year's scores (`server.metrics.scores.YearScores`), when served.
        self.scores: Callable[[], Scores] | None = None
        self._calendar: WorkCalendar | None = None  # built at the first read: it takes a while
        self.failures = 0
        self._lock = threading.Lock()
        self._reading = False
        self._families: list[Metric] | None = None
        self._rendered = b""
        self._attempted = threading.Event()  # set once the first read has ended
        self._read_at = 0.0
        self._read_seconds = 0.0

    def reconfigure(self, deployment: Deployment, calendar: WorkCalendar | None = None) -> None:
        """Read with `deployment` (a reloaded config/) and its `calendar` from the next
        snapshot on."""
        self.deployment, self._calendar = deployment, calendar

    def calendar(self) -> WorkCalendar:
        """The deployment's working-day calendar, built once."""
        if self._calendar is None:
            self._calendar = WorkCalendar.from_config(self.deployment.calendar)
        return self._calendar

    def refresh(self) -> None:
        """Read a fresh snapshot now, in this thread, and render its exposition text."""
        started = self.monotonic()
        try:
            families = snapshot_families(
                self.engine, self.deployment, self.now(), self.working_hours, self.calendar()
            )
            if self.scores is not None:
                families += score_families(self.scores())
            rendered = generate_latest(_registry_of(families))
        except Exception:
            self.failures += 1
            logger.exception("metrics: reading the store failed (%d failure(s))", self.failures)
            return
        finally:
            with self._lock:
                self._reading = False
            self._attempted.set()
        with self._lock:
            self._families = families
            self._rendered = rendered
            self._read_at = self.monotonic()
            self._read_seconds = self._read_at - started

    def warm_up(self) -> None:
        """Begin reading the first snapshot in the background, so the first scrape need not."""
        self._read_in_background()

    def _read_in_background(self) -> None:
        with self._lock:
            start = not self._reading
            self._reading = True
        if start:
            threading.Thread(target=self.refresh, name="metrics-refresh", daemon=True).start()

    def _stale(self) -> bool:
        return self._families is None or self.monotonic() - self._read_at >= self.max_age

    def _current(self) -> tuple[list[Metric], bytes, list[Metric]]:
        """The snapshot's families, their rendered text and the snapshot's own status."""
        if self.background and self._families is None and self._reading:
            self._attempted.wait(WARM_UP_WAIT_SECONDS)  # the first read, begun by warm_up()
        if self._families is None or not self.background:
            if self._stale():
                with self._lock:
                    self._reading = True
                self.refresh()
        elif self._stale():
            self._read_in_background()
        with self._lock:
            families = self._families or []
            rendered = self._rendered
            age = self.monotonic() - self._read_at if self._families is not None else 0.0
            took = self._read_seconds
        failures = CounterMetricFamily(
            "esup_metrics_snapshot_failures",
            "Failed reads of the store's figures in this process.",
        )
        failures.add_metric([], self.failures)
        status: list[Metric] = [
            _gauge("esup_metrics_snapshot_age_seconds", "Age of the store figures served.", age),
            _gauge(
                "esup_metrics_snapshot_read_seconds",
                "How long reading them from the store took.",
                took,
            ),
            failures,
        ]
        return families, rendered, status

    def collect(self) -> Iterable[Metric]:
        families, _, status = self._current()
        yield from families
        yield from status

    def exposition(self) -> bytes:
        """The text exposition of `collect()`, the snapshot's part rendered when it was read."""
        _, rendered, status = self._current()
        return rendered + generate_latest(_registry_of(status))


class _Fixed:
    """A collector of families already built."""

    def __init__(self, families: Sequence[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


def _registry_of(families: Sequence[Metric]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(families))
    return registry


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation)
    family.add_metric([], value)
    return family
