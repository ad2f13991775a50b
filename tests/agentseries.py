"""The agent's series that are a contract (docs/metrics.md): every one must be exposed by
the agent and documented. One list for the tests of both."""

from __future__ import annotations

from typing import Final

AGENT_SERIES: Final = [
    "esup_agent_info",
    "esup_agent_outbox_events",
    "esup_agent_outbox_bytes",
    "esup_agent_outbox_cap_bytes",
    "esup_agent_backpressure",
    "esup_agent_dead_letters",
    "esup_agent_source_events_total",
    "esup_agent_source_last_event_timestamp_seconds",
    "esup_agent_source_stale",
    "esup_agent_delivered_events_total",
    "esup_agent_delivery_failures_total",
    "esup_agent_last_delivery_timestamp_seconds",
    "esup_agent_open_cases",
    "esup_agent_flags_total",
    "esup_agent_unknown_items_total",
    "esup_agent_resident_memory_bytes",
    "esup_agent_cpu_seconds_total",
    "esup_agent_open_files",
    "esup_agent_state_disk_free_bytes",
    "esup_agent_workflow_process_up",
]
