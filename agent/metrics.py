"""The agent's own metrics, built at scrape time from views of its parts.

`AgentCollector` is a custom collector registered on the agent's own
`CollectorRegistry` (`agent_registry`), never on prometheus_client's global
one. Every family is built when Prometheus scrapes, from small views the
agent's parts satisfy structurally -- the outbox, the sources, the delivery,
the live clocks, the self-monitor, the notifier -- so a source or department
that disappears leaves no stale series behind, and nothing is polled between
scrapes. A view left out (None) leaves its families out.

The names are a contract (alert rules and dashboards use them); see
docs/agent-monitoring.md for the table with labels and cardinality:

    esup_agent_info{agent,version}                                  1
    esup_agent_outbox_events, _outbox_bytes, _outbox_cap_bytes       gauges
    esup_agent_backpressure                                          0/1
    esup_agent_dead_letters                                          gauge
    esup_agent_source_events_total{source,outcome="read|rejected"}
    esup_agent_source_last_event_timestamp_seconds{source}
    esup_agent_source_stale{source}                                  0/1
    esup_agent_delivered_events_total{outcome="accepted|duplicate|rejected"}
    esup_agent_delivery_failures_total
    esup_agent_last_delivery_timestamp_seconds
    esup_agent_open_cases{department,level}
    esup_agent_flags_total{department,level}    level: warning|yellow|red|procedure_overrun
    esup_agent_unknown_items_total{department}
    esup_agent_notices_total{outcome="sent|failed|retried|unsent"}, esup_agent_notices_pending
    esup_agent_resident_memory_bytes, _cpu_seconds_total, _open_files
    esup_agent_state_disk_free_bytes, esup_agent_workflow_process_up  0/1
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Final, Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)

from agent.liveclocks import FLAG_LEVELS

__all__ = [
    "AgentCollector",
    "ClocksView",
    "DeliveryView",
    "MonitorView",
    "NoticesView",
    "OutboxView",
    "SourceView",
    "agent_registry",
]

#: Open-case levels always shown for every department (0 when none), so a panel or a
#: rule sees a zero rather than no data; other levels appear when a case has them.
MAIN_LEVELS: Final[tuple[str, ...]] = ("normal", "warning", "yellow", "red", "suspended")
DELIVERY_OUTCOMES: Final[tuple[str, ...]] = ("accepted", "duplicate", "rejected")


class OutboxView(Protocol):
    def depth(self) -> int: ...
    def size_bytes(self) -> int: ...
    def cap_bytes(self) -> int: ...
    def paused(self) -> bool: ...
    def dead_letters(self) -> int: ...


class SourceView(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def last_event_at(self) -> float | None: ...
    @property
    def events_read(self) -> int: ...
    @property
    def events_rejected(self) -> int: ...


class DeliveryView(Protocol):
    #: keys accepted, duplicate, rejected, failed_attempts
    @property
    def counts(self) -> Mapping[str, int]: ...
    @property
    def last_success_at(self) -> float | None: ...


class ClocksView(Protocol):
    """agent.liveclocks.LiveClocks."""

    def open_cases(self) -> Mapping[tuple[str, str], int]: ...
    def flags_raised(self) -> Mapping[tuple[str, str], int]: ...
    def unknown_items(self) -> Mapping[str, int]: ...


class MonitorView(Protocol):
    """agent.selfmonitor.SelfMonitor."""

    def resident_memory_bytes(self) -> int: ...
    def cpu_seconds(self) -> float: ...
    def open_files(self) -> int: ...
    def state_disk_free_bytes(self) -> int: ...
    def workflow_process_up(self) -> bool | None: ...
    def source_stale(self, last_event_at: float | None) -> bool: ...


class NoticesView(Protocol):
    """agent.notify.Notifier."""

    @property
    def outcomes(self) -> Mapping[str, int]: ...
    def pending(self) -> int: ...


class AgentCollector:
    """Builds the agent's metric families on every scrape.

    `departments` are the agent's department codes: every one gets its
    open-case and flag series from zero. `sources` is a function so that the
    sources can change while the agent runs.
    """

    def __init__(
        self,
        agent: str,
        version: str,
        *,
        departments: Sequence[str] = (),
        outbox: OutboxView | None = None,
        sources: Callable[[], Iterable[SourceView]] | None = None,
        delivery: DeliveryView | None = None,
        clocks: ClocksView | None = None,
        monitor: MonitorView | None = None,
        notices: NoticesView | None = None,
    ) -> None:
        self.agent = agent
        self.version = version
        self.departments = tuple(departments)
        self.outbox = outbox
        self.sources = sources
        self.delivery = delivery
        self.clocks = clocks
        self.monitor = monitor
        self.notices = notices

    def collect(self) -> Iterator[Metric]:
        info = InfoMetricFamily("esup_agent", "The agent's name and version.")
        info.add_metric([], {"agent": self.agent, "version": self.version})
        yield info
        if self.outbox is not None:
            yield from self._outbox(self.outbox)
        if self.sources is not None:
            yield from self._sources(list(self.sources()))
        if self.delivery is not None:
            yield from self._delivery(self.delivery)
        if self.clocks is not None:
            yield from self._clocks(self.clocks)
        if self.notices is not None:
            yield from self._notices(self.notices)
        if self.monitor is not None:
            yield from self._process(self.monitor)

    def _outbox(self, outbox: OutboxView) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "esup_agent_outbox_events", "Events waiting in the outbox.", value=outbox.depth()
        )
        yield GaugeMetricFamily(
            "esup_agent_outbox_bytes", "Bytes the outbox holds.", value=outbox.size_bytes()
        )
        yield GaugeMetricFamily(
            "esup_agent_outbox_cap_bytes",
            "The outbox's disk cap; sources pause when it is reached.",
            value=outbox.cap_bytes(),
        )
        yield GaugeMetricFamily(
            "esup_agent_backpressure",
            "1 while sources are paused because the outbox reached its cap.",
            value=1 if outbox.paused() else 0,
        )
        yield GaugeMetricFamily(
            "esup_agent_dead_letters",
            "Events the server rejected, kept for a replay after a fix.",
            value=outbox.dead_letters(),
        )

    def _sources(self, sources: list[SourceView]) -> Iterator[Metric]:
        events = CounterMetricFamily(
            "esup_agent_source_events",
            "Events a source read, by outcome (read: good, rejected: bad line or record).",
            labels=["source", "outcome"],
        )
        last = GaugeMetricFamily(
            "esup_agent_source_last_event_timestamp_seconds",
            "When a source last produced an event (POSIX seconds); absent before the first.",
            labels=["source"],
        )
        stale = GaugeMetricFamily(
            "esup_agent_source_stale",
            "1 when a source produced no event for the configured working time.",
            labels=["source"],
        )
        for source in sources:
            events.add_metric([source.name, "read"], source.events_read)
            events.add_metric([source.name, "rejected"], source.events_rejected)
            if source.last_event_at is not None:
                last.add_metric([source.name], source.last_event_at)
            if self.monitor is not None:
                stale.add_metric(
                    [source.name], int(self.monitor.source_stale(source.last_event_at))
                )
        yield events
        yield last
        if self.monitor is not None:
            yield stale

    def _delivery(self, delivery: DeliveryView) -> Iterator[Metric]:
        counts = delivery.counts
        delivered = CounterMetricFamily(
            "esup_agent_delivered_events",
            "Events the server answered, by its answer.",
            labels=["outcome"],
        )
        for outcome in DELIVERY_OUTCOMES:
            delivered.add_metric([outcome], counts.get(outcome, 0))
        yield delivered
        yield CounterMetricFamily(
            "esup_agent_delivery_failures",
            "Batches that failed to reach the server (network, 5xx, 429), each retried.",
            value=counts.get("failed_attempts", 0),
        )
        last = GaugeMetricFamily(
            "esup_agent_last_delivery_timestamp_seconds",
            "When the server last accepted a batch (POSIX seconds); absent before the first.",
        )
        if delivery.last_success_at is not None:
            last.add_metric([], delivery.last_success_at)
        yield last

    def _clocks(self, clocks: ClocksView) -> Iterator[Metric]:
        open_cases = dict.fromkeys(((d, v) for d in self.departments for v in MAIN_LEVELS), 0)
        open_cases.update(clocks.open_cases())
        gauge = GaugeMetricFamily(
            "esup_agent_open_cases",
            "Open cases the live clocks track, by department and level.",
            labels=["department", "level"],
        )
        for (department, level), n in sorted(open_cases.items()):
            gauge.add_metric([department, level], n)
        yield gauge
        flags = dict.fromkeys(((d, v) for d in self.departments for v in FLAG_LEVELS), 0)
        flags.update(clocks.flags_raised())
        family = CounterMetricFamily(
            "esup_agent_flags",
            "Flags raised on cases (warning, yellow, red, procedure_overrun), each once.",
            labels=["department", "level"],
        )
        for (department, level), n in sorted(flags.items()):
            family.add_metric([department, level], n)
        yield family
        unknown = dict.fromkeys(self.departments, 0)
        unknown.update(clocks.unknown_items())
        unknown_family = CounterMetricFamily(
            "esup_agent_unknown_items",
            "Cases met with an item the catalog does not know (not clocked), by department.",
            labels=["department"],
        )
        for department, n in sorted(unknown.items()):
            unknown_family.add_metric([department], n)
        yield unknown_family

    def _notices(self, notices: NoticesView) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "esup_agent_notices",
            "Notices to department contacts, by outcome (sent; failed: given up; retried;"
            " unsent: no webhook configured).",
            labels=["outcome"],
        )
        for outcome, n in sorted(notices.outcomes.items()):
            family.add_metric([outcome], n)
        yield family
        yield GaugeMetricFamily(
            "esup_agent_notices_pending", "Notices not yet delivered.", value=notices.pending()
        )

    def _process(self, monitor: MonitorView) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "esup_agent_resident_memory_bytes",
            "Resident memory of the agent process.",
            value=monitor.resident_memory_bytes(),
        )
        yield CounterMetricFamily(
            "esup_agent_cpu_seconds",
            "User and system CPU time of the agent process.",
            value=monitor.cpu_seconds(),
        )
        yield GaugeMetricFamily(
            "esup_agent_open_files",
            "Open file descriptors of the agent process.",
            value=monitor.open_files(),
        )
        yield GaugeMetricFamily(
            "esup_agent_state_disk_free_bytes",
            "Free space on the file system of the agent's state folder.",
            value=monitor.state_disk_free_bytes(),
        )
        up = monitor.workflow_process_up()
        if up is not None:
            yield GaugeMetricFamily(
                "esup_agent_workflow_process_up",
                "1 when the workflow system's process is running.",
                value=int(up),
            )


def agent_registry(collector: AgentCollector) -> CollectorRegistry:
    """A registry of the agent's own holding `collector` (never the global one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry
