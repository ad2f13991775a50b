"""The settings example in docs/agent-monitoring.md is valid for every model it shows."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from agent.catalogcache import CatalogSettings
from agent.httpserver import HttpSettings
from agent.liveclocks import LiveClockSettings
from agent.notify import NotifySettings
from agent.selfmonitor import MonitorSettings

DOC = Path(__file__).resolve().parents[2] / "docs" / "agent-monitoring.md"
MODELS: dict[str, type[BaseModel]] = {
    "clocks": LiveClockSettings,
    "notify": NotifySettings,
    "catalog": CatalogSettings,
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


def test_an_unknown_key_is_refused() -> None:
    with pytest.raises(ValueError, match="webhok_url"):
        NotifySettings.model_validate({"webhok_url": "http://127.0.0.1/"})
