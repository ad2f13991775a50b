"""The settings example in docs/agent-monitoring.md is valid: every section as part of an
agent's config file, and each piece's own model."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from agent.config import AgentConfig, CatalogSection
from agent.httpserver import HttpSettings
from agent.liveclocks import LiveClockSettings
from agent.notify import NotifySettings
from agent.selfmonitor import MonitorSettings

DOC = Path(__file__).resolve().parents[2] / "docs" / "agent-monitoring.md"
MODELS: dict[str, type[BaseModel]] = {
    "clocks": LiveClockSettings,
    "notify": NotifySettings,
    "catalog": CatalogSection,
    "monitor": MonitorSettings,
    "http": HttpSettings,
}


def example() -> dict[str, object]:
    block = DOC.read_text(encoding="utf-8").rsplit("```yaml", 1)[1].split("```", 1)[0]
    data = yaml.safe_load(block)
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize("section", sorted(MODELS))
def test_the_documented_section_is_valid(section: str) -> None:
    MODELS[section].model_validate(example()[section])


def test_the_example_shows_every_section() -> None:
    assert set(example()) == set(MODELS)


def test_the_sections_are_valid_in_an_agent_config() -> None:
    config = AgentConfig.model_validate(
        {
            "name": "agent-fgw",
            "departments": ["fgw"],
            "server": {"url": "https://esup.city.example", "token": "t"},
            "state_dir": "/var/lib/esup-agent",
            "sources": [{"kind": "dropfolder", "name": "drop", "path": "/srv/drop"}],
            **example(),
        }
    )
    assert config.notify.contact_of("fgw") == "13800000000"
    assert config.catalog_settings().server_url == "https://esup.city.example"


def test_an_unknown_key_is_refused() -> None:
    with pytest.raises(ValueError, match="webhok_url"):
        NotifySettings.model_validate({"webhok_url": "http://127.0.0.1/"})
