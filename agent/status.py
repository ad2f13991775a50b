"""`esup-agent status`: what the state database says, for an operator.

    StatusSection                 a further part of the report (protocol)
    collect_status(config, conn, sections) -> dict
    render_status(report) -> str

The report holds the outbox (depth, bytes, cap, paused, oldest waiting
event, per source), the dead letters, and each source (its last seq and
where it stands: drop-folder files tracked, an exchange database's
checkpoint). Further sections — open cases by level, kept by the live clocks —
are handed in by whoever builds the command (`agent.cli.main(sections=...)`).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from agent.config import AgentConfig, DropFolderConfig

__all__ = ["OpenCasesSection", "StatusSection", "collect_status", "render_status"]

#: The order levels are shown in (any other level follows, by name).
LEVELS = ("red", "yellow", "warning", "normal", "suspended", "pending", "unknown_item", "invalid")


class StatusSection(Protocol):
    """One more part of the status report, read from the state database."""

    title: str

    def collect(self, conn: sqlite3.Connection) -> dict[str, Any]: ...


class OpenCasesSection:
    """Open cases by level (and by department), and flags raised, from the live clocks'
    tables; empty before the clocks' first start."""

    title = "open cases"

    def collect(self, conn: sqlite3.Connection) -> dict[str, Any]:
        (present,) = conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE name IN ('clock_cases', 'clock_counts')"
        ).fetchone()
        if present < 2:
            return {"total": 0, "by_level": {}, "by_department": {}, "flags_raised": {}}
        from agent import openstore  # only when the clocks have run

        by_level: dict[str, int] = {}
        by_department: dict[str, dict[str, int]] = {}
        for (department, level), n in sorted(openstore.level_counts(conn).items()):
            by_level[level] = by_level.get(level, 0) + n
            by_department.setdefault(department, {})[level] = n
        flags: dict[str, int] = {}
        for (_, level), n in openstore.counts(conn, "flags").items():
            flags[level] = flags.get(level, 0) + n
        (waiting,) = conn.execute("SELECT count(*) FROM clock_cases WHERE level = ''").fetchone()
        return {
            "total": sum(by_level.values()) + waiting,
            "by_level": _ordered(by_level),
            "by_department": {d: _ordered(v) for d, v in by_department.items()},
            "flags_raised": _ordered(flags),
            "not_yet_evaluated": waiting,
        }


def _ordered(counts: dict[str, int]) -> dict[str, int]:
    rank = {level: i for i, level in enumerate(LEVELS)}
    return dict(sorted(counts.items(), key=lambda kv: (rank.get(kv[0], len(LEVELS)), kv[0])))


def _instant(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


def collect_status(
    config: AgentConfig,
    conn: sqlite3.Connection,
    sections: Sequence[StatusSection] = (),
    *,
    now: float | None = None,
) -> dict[str, Any]:
    """The status report as a JSON-ready dict."""
    now = time.time() if now is None else now
    depth, size, oldest = conn.execute(
        "SELECT count(*), coalesce(sum(size), 0), min(queued_at) FROM outbox"
    ).fetchone()
    per_source = dict(conn.execute("SELECT source, count(*) FROM outbox GROUP BY source"))
    (dead,) = conn.execute("SELECT count(*) FROM dead_letters").fetchone()
    seqs = dict(conn.execute("SELECT source, last_seq FROM source_seq"))
    sources: list[dict[str, Any]] = []
    for source in config.sources:
        entry: dict[str, Any] = {
            "name": source.name,
            "kind": source.kind,
            "last_seq": seqs.get(source.name, 0),
            "waiting": per_source.get(source.name, 0),
        }
        if isinstance(source, DropFolderConfig):
            files, last = conn.execute(
                "SELECT count(*), max(updated_at) FROM dropfolder_files WHERE source = ?",
                (source.name,),
            ).fetchone()
            entry.update(path=str(source.path), files_seen=files, last_read_at=_instant(last))
        else:
            row = conn.execute(
                "SELECT value, updated_at FROM checkpoints WHERE source = ?", (source.name,)
            ).fetchone()
            entry.update(
                checkpoint=row[0] if row else None,
                last_read_at=_instant(row[1] if row else None),
            )
        sources.append(entry)
    report: dict[str, Any] = {
        "agent": config.name,
        "state_db": str(config.state_db),
        "outbox": {
            "depth": depth,
            "size_bytes": size,
            "cap_bytes": config.outbox_cap_bytes,
            "paused": size >= config.outbox_cap_bytes,
            "oldest_waiting_seconds": None if oldest is None else round(now - oldest, 1),
        },
        "dead_letters": dead,
        "sources": sources,
    }
    for section in sections:
        report[section.title] = section.collect(conn)
    return report


def render_status(report: dict[str, Any]) -> str:
    """The report as lines of text."""
    box = report["outbox"]
    lines = [
        f"agent {report['agent']} (state {report['state_db']})",
        f"outbox: {box['depth']} event(s) waiting, {box['size_bytes']} of"
        f" {box['cap_bytes']} bytes" + (" — PAUSED (cap reached)" if box["paused"] else ""),
    ]
    if box["oldest_waiting_seconds"] is not None:
        lines.append(f"  oldest waiting for {box['oldest_waiting_seconds']} s")
    lines.append(f"dead letters: {report['dead_letters']}")
    lines.append("sources:")
    for source in report["sources"]:
        details = ", ".join(
            f"{k}={v}" for k, v in source.items() if k not in ("name", "kind") and v is not None
        )
        lines.append(f"  {source['name']} ({source['kind']}): {details}")
    known = {"agent", "state_db", "outbox", "dead_letters", "sources"}
    for title, body in report.items():
        if title in known:
            continue
        lines.append(f"{title}:")
        for key, value in body.items():
            if isinstance(value, dict):
                value = _render_mapping(value)
            lines.append(f"  {key}: {value}")
    return "\n".join(lines)


def _render_mapping(value: dict[str, Any]) -> str:
    """`red 1, yellow 2`; nested mappings in brackets; `none` when empty."""
    if not value:
        return "none"
    return ", ".join(
        f"{k} [{_render_mapping(v)}]" if isinstance(v, dict) else f"{k} {v}"
        for k, v in value.items()
    )
