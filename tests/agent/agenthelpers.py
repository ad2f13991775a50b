"""Helpers for the agent's tests: configs in a temporary folder, a fake clock, event lines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agent.config import AgentConfig


class FakeClock:
    """Unix seconds that move only when told to."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def event(number: int, **fields: Any) -> dict[str, Any]:
    """A valid `accepted` event of department fgw, item fgw-001, numbered `number`."""
    base: dict[str, Any] = {
        "event_id": f"e-{number}",
        "case_id": f"C-{number}",
        "department": "fgw",
        "item": "fgw-001",
        "type": "accepted",
        "at": "2024-03-01T09:30:00+08:00",
    }
    base.update(fields)
    return base


def line(number: int, **fields: Any) -> str:
    return json.dumps(event(number, **fields), ensure_ascii=False) + "\n"


def agent_config(tmp_path: Path, **overrides: Any) -> AgentConfig:
    """A config with one drop folder `tmp_path/drop`, state in `tmp_path/state`."""
    source = {
        "kind": "dropfolder",
        "name": "drop",
        "path": str(tmp_path / "drop"),
        "finish_after_seconds": 0,
    }
    source.update(overrides.pop("source", {}))
    data: dict[str, Any] = {
        "name": "agent-1",
        "departments": ["fgw", "jyj"],
        "server": {"url": "http://esup.test", "token": "secret"},
        "state_dir": str(tmp_path / "state"),
        "sources": [source],
    }
    data.update(overrides)
    return AgentConfig.model_validate(data)
